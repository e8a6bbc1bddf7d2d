"""Pressroom's workers: the five steps, their Celery tasks, storage and providers."""
