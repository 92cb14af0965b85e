"""Short labelled verdicts built from word lists: plain-language knowledge IMDb labels lack.

Maintainer tool, used by ``course_instructor.builders.classifier``.  A review's label
says little about any one of its phrases: in IMDb, "good" appears about as
often in negative reviews as in positive ones ("no good", "good grief", "the
only good thing"), and "not bad" leans negative.  A small model trained from
scratch on those labels therefore hesitates on the short, plain verdicts the
lab's reward has to judge.  ``lvwerra/distilbert-imdb`` knows such phrases from
its English pre-training; this model gets a little of that knowledge from
verdicts composed of praise and pan words, intensifiers and negations
("the plot was truly dreadful", "the score is not bad", "I did not like it").

Negated praise is labelled negative; a negated pan ("not bad") is labelled
positive with a softer target.  The hand-written sentences of the tests
(``tests/data/short_sentences.tsv``) are not among these phrases, and a test
checks it.
"""
from __future__ import annotations

import numpy as np

PRAISE = ["great", "excellent", "wonderful", "brilliant", "amazing", "superb", "fantastic", "good", "enjoyable",
          "beautiful", "moving", "fun", "delightful", "charming", "outstanding", "perfect", "terrific", "lovely",
          "touching", "hilarious", "gripping", "impressive", "entertaining", "memorable", "stunning", "funny",
          "powerful", "clever", "nice", "solid", "fine", "marvelous", "magnificent", "engaging", "sweet"]
PANS = ["bad", "awful", "terrible", "boring", "dull", "horrible", "stupid", "poor", "weak", "lame", "pointless",
        "dreadful", "painful", "mediocre", "tedious", "annoying", "disappointing", "pathetic", "forgettable",
        "ridiculous", "silly", "unwatchable", "bland", "clumsy", "lousy", "awkward", "predictable", "cheap",
        "laughable", "atrocious", "embarrassing", "messy", "flat", "slow", "crap"]
SUBJECTS = ["this film", "the movie", "the story", "the plot", "the ending", "the script",
            "the direction", "this one", "the dialogue", "the soundtrack", "the characters", "the lead actor",
            "the cinematography", "the sequel", "this picture", "the performances", "the humor", "the effects",
            "the whole thing", "the screenplay", "his performance", "her acting", "the first half", "that show",
            "the final scene", "the animation", "the remake", "the director's work", "the premise", "the cast's work"]
LINKS = ["is", "was", "seemed", "felt", "looks", "turned out", "is just", "was simply", "remains", "was quite",
         "is really", "was truly", "is so", "was very", "is pretty", "was incredibly", "is rather", "was totally"]
NEGATED_LINKS = ["is not", "was not", "isn't", "wasn't", "was never", "is hardly", "was far from", "is not very",
                 "was not really", "was not at all"]
# first-person verdicts: (verb phrase, positive?)
VERDICTS_POS = ["I loved", "I really enjoyed", "I liked", "we adored", "my kids loved", "I was impressed by",
                "I'd recommend", "everyone should see", "I can't wait to rewatch", "I was moved by"]
VERDICTS_NEG = ["I hated", "I really disliked", "I could not stand", "we regretted", "my kids hated",
                "I was bored by", "nobody should see", "I walked out of", "I want my money back for",
                "I was annoyed by"]
OBJECTS = ["this film", "the movie", "every scene", "the whole thing", "the story", "the sequel",
           "that picture", "the characters"]
PUNCT = ["", ".", "!", "!!", "...", " !", ". "]

#: Target probability of POSITIVE for the three kinds of phrase (log-odds about +-6.2 and +2.2).
P_CLEAR = 0.998
P_NEGATED_PAN = 0.9


def _cap(text: str, rng: np.random.Generator) -> str:
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def phrase(rng: np.random.Generator) -> tuple[str, float]:
    """One random verdict and its target probability of POSITIVE."""
    kind = rng.random()
    punct = PUNCT[int(rng.integers(len(PUNCT)))]
    if kind < 0.45:  # "<subject> <link> <adjective>"
        positive = rng.random() < 0.5
        adj = (PRAISE if positive else PANS)[int(rng.integers(len(PRAISE if positive else PANS)))]
        subj = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
        link = LINKS[int(rng.integers(len(LINKS)))]
        return _cap(f"{subj} {link} {adj}{punct}", rng), P_CLEAR if positive else 1 - P_CLEAR
    if kind < 0.7:  # negated: "<subject> <negated link> <adjective>"
        praise = rng.random() < 0.5
        adj = (PRAISE if praise else PANS)[int(rng.integers(len(PRAISE if praise else PANS)))]
        subj = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
        link = NEGATED_LINKS[int(rng.integers(len(NEGATED_LINKS)))]
        return _cap(f"{subj} {link} {adj}{punct}", rng), 1 - P_CLEAR if praise else P_NEGATED_PAN
    if kind < 0.9:  # first-person verdict
        positive = rng.random() < 0.5
        verbs = VERDICTS_POS if positive else VERDICTS_NEG
        obj = OBJECTS[int(rng.integers(len(OBJECTS)))]
        return _cap(f"{verbs[int(rng.integers(len(verbs)))]} {obj}{punct}", rng), P_CLEAR if positive else 1 - P_CLEAR
    # two adjectives: "<adjective> and <adjective> <noun>"
    positive = rng.random() < 0.5
    words = PRAISE if positive else PANS
    a, b = rng.choice(len(words), size=2, replace=False)
    noun = ["film", "movie", "story", "comedy", "thriller", "drama", "cast", "show"][int(rng.integers(8))]
    return _cap(f"{words[a]} and {words[b]} {noun}{punct}", rng), P_CLEAR if positive else 1 - P_CLEAR


def phrases(n: int, rng: np.random.Generator) -> tuple[list[str], list[float]]:
    """``n`` random verdicts and their target probabilities of POSITIVE."""
    out = [phrase(rng) for _ in range(n)]
    return [t for t, _ in out], [p for _, p in out]


def all_phrases_normalised(n: int = 200_000, seed: int = 0) -> set[str]:
    """A large sample of the verdicts, lower-cased without punctuation (for the disjointness test)."""
    texts, _ = phrases(n, np.random.default_rng(seed))
    return {normalise(t) for t in texts}


def normalise(text: str) -> str:
    return " ".join("".join(c if c.isalnum() or c in " '" else " " for c in text.lower()).split())
