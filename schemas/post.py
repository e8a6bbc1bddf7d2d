"""The post: its 19-key front matter and bilingual body, as the site expects it."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Model


class FrontMatterDefaults(Model):
    """Per-channel values for the keys the model does not decide."""

    area: str = ""
    category: str = ""
    project: list[str] = Field(default_factory=list)
    speaker: str = ""
    layout: str = "post.njk"
    status: str = "evergreen"
    draft: bool = True
    series: str = ""
    insight: str = ""


class TagSuggestion(Model):
    """What the tag step asks the model for (structured output)."""

    title: str = Field(description="post title in Simplified Chinese")
    summary: str = Field(description="2-4 sentence summary in Simplified Chinese of the whole talk")
    tags: list[str] = Field(description="3-8 topical tags as lowercase English slugs, e.g. reinforcement-learning")
    people: list[str] = Field(description="people named in the talk, canonical spelling")
    companies_orgs: list[str] = Field(description="companies and organisations, canonical spelling")
    products_models: list[str] = Field(description="products and AI models, canonical spelling")
    media_books: list[str] = Field(description="media outlets, books, podcasts and platforms mentioned")
    guest: str = Field(description="the main guest's name, or empty if none")


class FrontMatter(Model):
    """Exactly the keys of the reference post; yaml.safe_dump(sort_keys=True) orders them."""

    area: str
    category: str
    companies_orgs: list[str]
    date: str = Field(description="YYYY-MM-DD")
    draft: bool
    guest: str
    insight: str
    layout: str
    media_books: list[str]
    people: list[str]
    products_models: list[str]
    project: list[str]
    series: str
    source: str
    speaker: str
    status: str
    summary: str
    tags: list[str]
    title: str


class PostParagraph(Model):
    source: str
    translation: str


class PostSection(Model):
    heading: str
    paragraphs: list[PostParagraph]


class Post(Model):
    """The input of rendering; `pressroom render-post` reads this as JSON."""

    front_matter: FrontMatter
    sections: list[PostSection]
