"""Seeded generator of realistic English product and article text, and of query lists.

Deterministic for a seed, so two runs measure the same data. Word frequencies are skewed (Zipf-like)
the way real text is, so FULLTEXT sees common and rare terms as it would in production.
"""

from __future__ import annotations

import random

ADJECTIVES = """wireless ergonomic compact waterproof stainless portable smart organic durable lightweight vintage
solar premium classic modern rugged elegant silent rechargeable adjustable foldable heavy reliable affordable
professional insulated magnetic washable breathable cordless digital analog ceramic wooden leather cotton woollen
bamboo recycled handmade industrial minimalist luxurious versatile sturdy flexible transparent""".split()
NOUNS = """headphones keyboard backpack kettle thermostat camera lamp blender speaker tent charger notebook mouse
monitor chair desk bottle jacket boots blanket pillow mattress router drone watch tablet phone case cable adapter
microphone printer scanner projector heater fan toaster grinder knife pan pot bicycle helmet scooter umbrella wallet
sunglasses belt scarf gloves sofa rug curtain mirror shelf cabinet drill hammer saw ladder hose grill cooler""".split()
FEATURES = """long battery life, noise cancelling, quick setup, a two-year warranty, recycled materials, a sleek
aluminium body, fast charging over USB-C, a quiet motor, easy cleaning, bluetooth pairing, a water resistant
finish, adjustable height, a soft grip handle, energy saving mode, a detachable cable, memory foam padding,
overheat protection, a scratch resistant coating, voice control, a compact travel size, dual band wifi, a
high resolution sensor, a stainless steel blade, a child safety lock, automatic shutoff"""
FEATURES = FEATURES.replace("\n", " ").split(", ")
TOPICS = """database index query performance replication cache latency throughput server cluster network storage
memory security encryption backup recovery migration schema transaction consistency availability monitoring
logging deployment container kernel scheduler compiler runtime garbage collection concurrency thread process
search ranking relevance analytics dashboard pipeline stream batch queue message broker protocol api gateway
authentication authorization certificate firewall load balancer proxy""".split()
VERBS = """improves reduces explains measures compares tunes scales secures monitors simplifies accelerates
replaces configures debugs profiles benchmarks optimizes documents automates""".split()
FILLER = """the a an of to in for with on at by from and or but as is are was were be this that these those it its
their our your we you they how why when which while after before during between across into over under""".split()


PREFIXES = "un re pre over under inter micro macro multi auto counter hyper sub super trans semi".split()
ROOTS = """port form struct graph scope phon tract duct spect cred dict fer gen loc mit mob pend pos press rupt scrib
sens sist solv tain tend vert vid voc cycle meter logic norm sign serv flex jud lev liter mar mort nat nav part
plic quer rect rog sect sequ sol son spir tact temp term terr therm trib vac ven vers vis viv volv""".split()
SUFFIXES = "able ible tion sion ment ness er or ive al ic ous ist ism ity ize ure ing ed".split()


def _vocabulary(seed: int = 7, size: int = 6000) -> list[str]:
    """English-looking words from real prefixes, roots and suffixes, in a fixed random frequency order:
    like real text, a few words are everywhere and most are rare, so queries are selective."""
    rng = random.Random(seed)
    words = set(TOPICS + NOUNS + ADJECTIVES)
    while len(words) < size:
        word = rng.choice(ROOTS) + rng.choice(SUFFIXES)
        if rng.random() < 0.5:
            word = rng.choice(PREFIXES) + word
        words.add(word)
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


VOCABULARY = _vocabulary()


def _zipf_choice(rng: random.Random, words: list[str], skew: float = 1.1) -> str:
    return words[min(len(words) - 1, int(rng.paretovariate(skew)) - 1)]


def _zipf_word(rng: random.Random) -> str:
    """A word of the vocabulary by a Zipf law over ranks 1..6000 (rank r drawn with p ~ 1/r)."""
    return VOCABULARY[min(len(VOCABULARY) - 1, int(len(VOCABULARY) ** rng.random()) - 1)]


def _sentence(rng: random.Random, length: int) -> str:
    words = [rng.choice(FILLER) if rng.random() < 0.35 else _zipf_word(rng) for _ in range(length)]
    return " ".join(words).capitalize() + "."


def products(rng: random.Random, count: int, start: int = 1) -> list[tuple]:
    rows = []
    for i in range(count):
        adjective, noun = _zipf_choice(rng, ADJECTIVES), _zipf_choice(rng, NOUNS)
        features = rng.sample(FEATURES, 3)
        description = (
            f"This {adjective} {noun} comes with {features[0]}, {features[1]} and {features[2]}. "
            + _sentence(rng, 18)
            + " "
            + _sentence(rng, 12)
        )
        rows.append(
            (
                start + i,
                f"{adjective.title()} {noun} {rng.choice(ADJECTIVES)}",
                description,
                noun,
                round(rng.uniform(5, 900), 2),
            )
        )
    return rows


def articles(rng: random.Random, count: int, start: int = 1) -> list[tuple]:
    rows = []
    for i in range(count):
        topic, other = _zipf_choice(rng, TOPICS), _zipf_choice(rng, TOPICS)
        tail = rng.choice(["in practice", "at scale", "for beginners", "today"])
        title = f"How {topic} {rng.choice(VERBS)} {other} {tail}"
        body = " ".join(_sentence(rng, rng.randint(10, 25)) for _ in range(rng.randint(6, 12)))
        rows.append((start + i, title, body, rng.choice(["ana", "li", "sam", "noor", "ken"])))
    return rows


def queries(rng: random.Random, count: int) -> list[str]:
    """One to three words, as people type them: mostly mid-frequency vocabulary, some product words."""
    out = []
    while len(out) < count:
        words = [
            rng.choice(VOCABULARY[30:1500]) if rng.random() < 0.7 else rng.choice(NOUNS + ADJECTIVES)
            for _ in range(rng.randint(1, 3))
        ]
        query = " ".join(dict.fromkeys(words))
        if query not in out:
            out.append(query)
    return out
