"""Showing model outputs to harmful requests with care: a few words, marked, never the whole text.

The notebooks print some of the untuned model's answers so a reader sees what "complies" means. An answer to
a harmful request can carry harmful instructions, so it is shown cut to its first words and labelled as
model output. Use :func:`harmful_excerpt` wherever a notebook prints a response to a harmful prompt.
"""

from __future__ import annotations

HARMFUL_MARK = "[model output to a harmful request, truncated]"
N_WORDS = 12


def truncate_words(text: str, n_words: int = N_WORDS) -> str:
    """The first ``n_words`` words of ``text`` (whitespace, line breaks included, becomes one space), with
    " […]" when words were cut."""
    if n_words < 0:
        raise ValueError(f"n_words must be >= 0, got {n_words}")
    words = text.split()
    return " ".join(words[:n_words]) + (" […]" if len(words) > n_words else "")


def harmful_excerpt(response: str, n_words: int = N_WORDS) -> str:
    """A response to a harmful request as the notebooks print it: marked, cut to its first ``n_words`` words."""
    return f"{HARMFUL_MARK} {truncate_words(response, n_words)}"
