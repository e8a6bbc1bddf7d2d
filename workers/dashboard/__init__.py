"""The retry dashboard: a JSON API over run state and the broker's queues (`pressroom dashboard`)."""
