"""A synthetic world: items and users with latent tastes, arriving and drifting over days.

Items sit in a latent taste space, clustered by category. Each has an attractiveness (how
clicky its title is) kept apart from its quality (how satisfying it really is): clickbait is
attractive and unsatisfying. Users mix a few categories, differ a lot in how active they are,
and drift slowly; optionally, on one day, every user's tastes shift at once (``taste_shift_day``:
the favourite categories re-drawn). Everything comes from one seed, so a seed gives one world.
The shape of the world (how many categories, how peaked tastes are, how much clickbait and
how strong its pull) is configuration; ``recloop.simulate.family`` draws whole shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CATEGORIES: tuple[str, ...] = (
    "Comedy", "Drama", "Sci-Fi", "Music", "Cooking", "Travel",
    "Gaming", "News", "Sports", "Science", "Fashion", "Kids",
)  # fmt: skip

# Words that carry each category's signal into titles, descriptions and tags, so that a
# content model has something real to learn from.
_VOCABULARY: dict[str, tuple[str, ...]] = {
    "Comedy": ("laugh", "prank", "sketch", "stand-up", "parody", "blooper", "roast", "satire"),
    "Drama": ("betrayal", "family", "secret", "courtroom", "tears", "reunion", "saga", "legacy"),
    "Sci-Fi": ("starship", "android", "galaxy", "portal", "alien", "cyborg", "warp", "colony"),
    "Music": ("concert", "remix", "guitar", "album", "drummer", "ballad", "chorus", "tour"),
    "Cooking": ("recipe", "pasta", "bake", "grill", "spice", "dessert", "kitchen", "chef"),
    "Travel": ("island", "backpack", "mountain", "city", "roadtrip", "beach", "hostel", "trail"),
    "Gaming": ("speedrun", "boss", "loot", "esports", "quest", "console", "raid", "patch"),
    "News": ("election", "economy", "breaking", "report", "policy", "summit", "budget", "crisis"),
    "Sports": ("goal", "marathon", "derby", "playoff", "coach", "striker", "record", "league"),
    "Science": (
        "quantum",
        "fossil",
        "telescope",
        "genome",
        "climate",
        "experiment",
        "atom",
        "neuron",
    ),
    "Fashion": (
        "runway",
        "outfit",
        "vintage",
        "sneakers",
        "tailor",
        "streetwear",
        "fabric",
        "trend",
    ),
    "Kids": (
        "puppet",
        "dinosaur",
        "cartoon",
        "lullaby",
        "alphabet",
        "playground",
        "crayon",
        "fairy",
    ),
}
# Syllables for the made-up words of categories beyond the named ones. A category's words all
# begin with its own onset-nucleus pair (unique per category, and never a prefix of another
# category's, since a pair is read up to its first consonant after the vowels) and end in
# one of eight endings, so every category has its own eight words.
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "gl", "kr", "pl", "st", "tr", "zh")  # fmt: skip
_NUCLEI = ("a", "e", "i", "o", "u", "ai", "ou", "ei")
_CODAS = ("", "n", "r", "s", "x", "th", "k", "m")
_ENDINGS = ("", "on", "ax", "el", "ir", "um", "os", "et", "ar")
_MADE_UP = len(_ONSETS) * len(_NUCLEI)
_ADJECTIVES = (
    "Quiet", "Golden", "Lost", "Electric", "Hidden", "Midnight", "Wild", "Broken",
    "Silver", "Endless", "Little", "Final", "Secret", "Bright", "Cold", "Last",
)  # fmt: skip
_BAIT = ("You Won't Believe", "Shocking", "Gone Wrong", "Must See", "Insane")
#: The phrases clickbait titles open with (what a bait query holds).
BAIT_PHRASES: tuple[str, ...] = _BAIT
_LOCALES = ("en-US", "en-GB", "de-DE", "es-ES", "fr-FR")
_REGIONS = ("NA", "EU", "EU", "EU", "EU")  # aligned with _LOCALES
_DEVICES = ("ios", "android", "web")
_AGE_GROUPS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")


def category_names(count: int) -> tuple[str, ...]:
    """The names of ``count`` categories: the twelve named ones, then made-up words."""
    extra = [_made_up_word(k, 0).title() for k in range(len(CATEGORIES), count)]
    return (*CATEGORIES[:count], *extra)


def category_vocabulary(category: str, index: int) -> tuple[str, ...]:
    """The eight words that carry a category's signal into its items' text.

    Named categories have real words; the others get made-up words that follow from the
    category's index alone (not from any world's seed), unique across categories.
    """
    if category in _VOCABULARY:
        return _VOCABULARY[category]
    return tuple(_made_up_word(index, n) for n in range(1, len(_ENDINGS)))


_REAL_WORDS = {c.lower() for c in CATEGORIES} | {w for ws in _VOCABULARY.values() for w in ws}


def _made_up_word(index: int, n: int) -> str:
    slot = (index - len(CATEGORIES)) % _MADE_UP
    prefix = _ONSETS[slot % len(_ONSETS)] + _NUCLEI[slot // len(_ONSETS)]
    rng = np.random.default_rng([index, n, 104729])
    middle = str(rng.choice(_ONSETS)) + str(rng.choice(_NUCLEI)) + str(rng.choice(_CODAS))
    word = prefix + middle + _ENDINGS[n]
    # A made-up word that happens to be a real category's word would blur the two.
    return word + "o" if word in _REAL_WORDS else word


class WorldConfig(BaseModel):
    """Sizes, rates and shape of the world; the defaults make a demo of a few minutes on 2
    cores (and are the world every earlier run used: 12 categories, 10 % clickbait)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 7
    dim: int = Field(default=16, ge=2)
    initial_items: int = Field(default=1500, ge=10)
    new_items_per_day: int = Field(default=60, ge=0)
    initial_users: int = Field(default=400, ge=1)
    new_users_per_day: int = Field(default=30, ge=0)
    clickbait_share: float = Field(default=0.1, ge=0, le=1)
    bot_share: float = Field(default=0.01, ge=0, le=1)
    sessions_per_day_median: float = Field(default=0.8, gt=0)
    activity_sigma: float = Field(default=1.1, ge=0)
    taste_drift_per_day: float = Field(default=0.03, ge=0)
    creators_per_category: int = Field(default=25, ge=1)
    categories: int = Field(
        default=len(CATEGORIES),
        ge=2,
        le=len(CATEGORIES) + _MADE_UP,
        description="How many categories; beyond the twelve named ones, names and "
        "vocabulary are made up deterministically.",
    )
    category_skew: float = Field(
        default=0.0,
        ge=0,
        description="Zipf exponent of category sizes: 0 gives every category the same share "
        "of items, 1 makes the k-th category's share proportional to 1/k.",
    )
    item_spread: float = Field(
        default=0.55, ge=0, description="Noise of an item's vector around its category centroid."
    )
    favourite_counts: tuple[int, ...] = Field(
        default=(1, 2, 2, 3),
        min_length=1,
        description="How many categories a user mixes: drawn uniformly from this tuple.",
    )
    taste_concentration: float = Field(
        default=2.0,
        gt=0,
        description="Dirichlet concentration of a user's weights over their favourite "
        "categories: small values make one category dominate, large ones an even mix.",
    )
    taste_noise: float = Field(
        default=0.3, ge=0, description="Noise of a user's taste around their category mix."
    )
    attractiveness_sigma: float = Field(
        default=0.6, ge=0, description="Spread of items' attractiveness (logit scale)."
    )
    clickbait_pull: float = Field(
        default=1.2, ge=0, description="Attractiveness clickbait gains (logit scale)."
    )
    clickbait_quality: tuple[float, float] = Field(
        default=(1.5, 5.0), description="Beta parameters of clickbait's quality."
    )
    quality: tuple[float, float] = Field(
        default=(4.0, 2.0), description="Beta parameters of other items' quality."
    )
    taste_shift_day: int | None = Field(
        default=None,
        ge=1,
        description="The simulated day (1 is the first, as the demo numbers them) at whose "
        "start every user present "
        "shifts tastes at once: new favourite categories are drawn (unlike the old where the "
        "world has enough) and the taste moves towards them by taste_shift. None: no shift.",
    )
    taste_shift: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="How far the shift moves a taste: 0 keeps it, 1 replaces it with one "
        "drawn from the new favourites; in between, the normalised mix of the two.",
    )

    @field_validator("favourite_counts")
    @classmethod
    def _counts_fit(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if min(value) < 1:
            raise ValueError("every favourite count must be at least 1")
        return value

    @model_validator(mode="after")
    def _favourites_fit(self) -> WorldConfig:
        if max(self.favourite_counts) > self.categories:
            raise ValueError(
                f"favourite_counts {self.favourite_counts} ask for more categories than the "
                f"world's {self.categories}"
            )
        return self


@dataclass(slots=True)
class SimItem:
    """An item of the world; ``vector``, ``attractiveness`` and ``quality`` are hidden."""

    item_id: str
    category: str
    creator_id: str
    title: str
    description: str
    tags: tuple[str, ...]
    published_at: datetime
    vector: np.ndarray
    attractiveness: float
    quality: float
    is_clickbait: bool

    def as_json(self) -> dict[str, Any]:
        """The item as the API takes it (nothing hidden leaks)."""
        return {
            "itemId": self.item_id,
            "type": "video",
            "title": self.title,
            "description": self.description,
            "category": self.category,
            "tags": list(self.tags),
            "creatorId": self.creator_id,
            "locale": "en",
            "createdAt": self.published_at.isoformat(),
        }


@dataclass(slots=True)
class SimUser:
    """A user of the world; ``taste`` and ``patience`` are hidden."""

    user_id: str
    taste: np.ndarray
    favourite_categories: tuple[str, ...]
    sessions_per_day: float
    patience: float
    locale: str
    region: str
    device: str
    age_group: str
    joined_at: datetime
    is_bot: bool = False
    seen: dict[str, int] = field(default_factory=dict)

    def attributes(self) -> dict[str, Any]:
        """What the service is told about the user."""
        return {
            "ageGroup": self.age_group,
            "region": self.region,
            "language": self.locale.split("-")[0],
            "locale": self.locale,
            "interests": [c.lower() for c in self.favourite_categories],
        }


class World:
    """Items, users, their arrival and drift, from one seeded generator.

    ``rng`` draws only the world's structure: items, users, drift and the session schedule.
    What users do with the lists they are served draws from separate streams
    (``session_rng``, ``delivery_rng``), so two runs with the same seed and different
    recommenders face the same users, items and sessions: a paired comparison.
    """

    def __init__(self, config: WorldConfig, start: datetime) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.delivery_rng = np.random.default_rng([config.seed, 2])
        self.start = start
        self.categories = category_names(config.categories)
        self._vocabulary = [category_vocabulary(c, k) for k, c in enumerate(self.categories)]
        # Category shares by a Zipf law; None keeps the uniform draw every earlier run made.
        self._category_p: np.ndarray | None = None
        if config.category_skew > 0:
            weights = np.arange(1, config.categories + 1, dtype=float) ** -config.category_skew
            self._category_p = weights / weights.sum()
        rng = self.rng
        centroids = rng.normal(size=(config.categories, config.dim))
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        self.items: list[SimItem] = []
        self.users: list[SimUser] = []
        self.item_by_id: dict[str, SimItem] = {}
        self._item_count = 0
        self._user_count = 0
        # Creators differ in output: a few produce most items (Zipf-like weights).
        ranks = np.arange(1, config.creators_per_category + 1)
        self._creator_weights = (1.0 / ranks) / (1.0 / ranks).sum()
        for _ in range(config.initial_items):
            self._new_item(start - timedelta(days=float(rng.uniform(0, 60))))
        for _ in range(config.initial_users):
            self._new_user(start - timedelta(days=float(rng.uniform(0, 365))))

    def session_rng(self, session_number: int) -> np.random.Generator:
        """The responses of one session: the same draws whatever is served to it."""
        return np.random.default_rng([self.config.seed, 1, session_number])

    def _new_item(self, published_at: datetime) -> SimItem:
        rng = self.rng
        config = self.config
        if self._category_p is None:
            k = int(rng.integers(config.categories))
        else:
            k = int(rng.choice(config.categories, p=self._category_p))
        category = self.categories[k]
        vector = self.centroids[k] + config.item_spread * rng.normal(size=config.dim)
        vector /= np.linalg.norm(vector)
        is_clickbait = bool(rng.random() < config.clickbait_share)
        words = self._vocabulary[k]
        topic = [str(w) for w in rng.choice(words, size=2, replace=False)]
        title = f"{rng.choice(_ADJECTIVES)} {topic[0].title()} {topic[1].title()}"
        if is_clickbait:
            title = f"{rng.choice(_BAIT)}: {title}"
        creator = int(rng.choice(len(self._creator_weights), p=self._creator_weights))
        item = SimItem(
            item_id=f"i{self._item_count:06d}",
            category=category,
            creator_id=f"{category.lower()}-creator-{creator:03d}",
            title=title,
            description=f"A {category.lower()} video about {topic[0]} and {topic[1]}.",
            tags=(category.lower(), *topic),
            published_at=published_at,
            vector=vector,
            # Attractiveness is on the logit scale; clickbait titles pull clicks...
            attractiveness=float(
                rng.normal(0.0, config.attractiveness_sigma)
                + (config.clickbait_pull if is_clickbait else 0.0)
            ),
            # ...and disappoint: quality is what decides dwell, likes and shares.
            quality=float(
                rng.beta(*config.clickbait_quality) if is_clickbait else rng.beta(*config.quality)
            ),
            is_clickbait=is_clickbait,
        )
        self._item_count += 1
        self.items.append(item)
        self.item_by_id[item.item_id] = item
        return item

    def _new_user(self, joined_at: datetime) -> SimUser:
        rng = self.rng
        config = self.config
        n_fav = int(rng.choice(config.favourite_counts))
        favourites = rng.choice(config.categories, size=n_fav, replace=False)
        weights = rng.dirichlet(np.ones(n_fav) * config.taste_concentration)
        taste = weights @ self.centroids[favourites] + config.taste_noise * rng.normal(
            size=config.dim
        )
        taste /= np.linalg.norm(taste)
        locale_index = int(rng.integers(len(_LOCALES)))
        is_bot = bool(rng.random() < config.bot_share)
        user = SimUser(
            user_id=f"{'b' if is_bot else 'u'}{self._user_count:06d}",
            taste=taste,
            favourite_categories=tuple(self.categories[int(k)] for k in favourites),
            # Log-normal activity: most users come rarely, a few come many times a day.
            sessions_per_day=float(
                (20.0 if is_bot else 1.0)
                * config.sessions_per_day_median
                * rng.lognormal(0.0, config.activity_sigma)
            ),
            patience=float(rng.beta(6.0, 2.0)),
            locale=_LOCALES[locale_index],
            region=_REGIONS[locale_index],
            device=str(rng.choice(_DEVICES, p=(0.45, 0.4, 0.15))),
            age_group=str(rng.choice(_AGE_GROUPS)),
            joined_at=joined_at,
            is_bot=is_bot,
        )
        self._user_count += 1
        self.users.append(user)
        return user

    def advance_day(self, day_start: datetime) -> tuple[list[SimItem], list[SimUser]]:
        """New items and users arrive during the day; every taste drifts a little, and on
        ``taste_shift_day`` shifts at the day's start (before anyone's first session)."""
        rng = self.rng
        config = self.config
        for user in self.users:
            user.taste = user.taste + config.taste_drift_per_day * rng.normal(size=config.dim)
            user.taste /= np.linalg.norm(user.taste)
        if config.taste_shift_day == self.day_of(day_start) + 1:
            self.shift_tastes()
        items = [
            self._new_item(day_start + timedelta(hours=float(rng.uniform(0, 24))))
            for _ in range(config.new_items_per_day)
        ]
        users = [
            self._new_user(day_start + timedelta(hours=float(rng.uniform(0, 24))))
            for _ in range(config.new_users_per_day)
        ]
        return items, users

    def day_of(self, at: datetime) -> int:
        """The simulated day ``at`` falls in, from 0 (the day starting at ``start``)."""
        return int((at - self.start) // timedelta(days=1))

    def shift_tastes(self) -> None:
        """Every user's tastes shift at once (``taste_shift_day``): favourite categories
        drawn anew, of the same count, none of the old ones where the world has enough
        others; the taste moves ``taste_shift`` of the way to one drawn from them.

        Draws come from a stream of their own, so the items, users, drift and sessions of
        the world stay those of the same seed without a shift.
        """
        config = self.config
        rng = np.random.default_rng([config.seed, 3])
        index = {c: k for k, c in enumerate(self.categories)}
        for user in self.users:
            old = [index[c] for c in user.favourite_categories]
            others = [k for k in range(config.categories) if k not in old]
            pool = others if len(others) >= len(old) else list(range(config.categories))
            favourites = rng.choice(pool, size=len(old), replace=False)
            weights = rng.dirichlet(np.ones(len(old)) * config.taste_concentration)
            drawn = weights @ self.centroids[favourites] + config.taste_noise * rng.normal(
                size=config.dim
            )
            drawn /= np.linalg.norm(drawn)
            taste = (1.0 - config.taste_shift) * user.taste + config.taste_shift * drawn
            norm = float(np.linalg.norm(taste))
            # Opposite tastes mixed half and half cancel: the new one, then.
            user.taste = taste / norm if norm > 1e-9 else drawn
            if config.taste_shift >= 0.5:
                # The new favourites weigh more in the taste than the old ones now.
                user.favourite_categories = tuple(self.categories[int(k)] for k in favourites)

    def item_matrix(self, item_ids: list[str]) -> np.ndarray:
        """Latent vectors of items, one row each."""
        return np.stack([self.item_by_id[i].vector for i in item_ids])
