"""Numbers as comic writers type them: ``12``, ``TWELVE``, ``TWENTY-THREE``, ``IV``.

Full Scripts traditionally spell page and panel numbers out (``PAGE TWENTY-THREE``), and a
misread number silently reorders a book, so parsing is strict: a sequence of number words
either forms one valid number below 1000 or is rejected.
"""

from __future__ import annotations

import re

_UNITS: dict[str, int] = {
    word: value
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_TENS: dict[str, int] = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,  # a common misspelling; refusing it would only annoy
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
NUMBER_WORDS = frozenset(_UNITS) | frozenset(_TENS) | {"hundred"}

_ROMAN_RE = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_WORD_RE = re.compile(r"[A-Za-z]+")
_JOINER_RE = re.compile(r"(?:[ \t]+|-)(?=[A-Za-z])")
_DIGITS_RE = re.compile(r"\d{1,6}(?!\d)")
MAX_DIGITS = 6
_MAX_NUMBER_WORDS = 5  # "nine hundred and ninety nine"; more can never be one number


def words_to_int(words: list[str]) -> int | None:
    """Value of ``["twenty", "three"]``-style word lists below 1000, or None if malformed."""
    tokens = [word.lower() for word in words]
    count = len(tokens)
    if count == 0:
        return None
    index = 0
    value = 0
    if count >= 2 and tokens[1] == "hundred":
        hundreds = _UNITS.get(tokens[0])
        if hundreds is None or not 1 <= hundreds <= 9:
            return None
        value = hundreds * 100
        index = 2
        if index < count and tokens[index] == "and":
            index += 1
            if index == count:
                return None
    if index < count:
        word = tokens[index]
        if word in _TENS:
            value += _TENS[word]
            index += 1
            if index < count:
                unit = _UNITS.get(tokens[index])
                if unit is None or not 1 <= unit <= 9:
                    return None
                value += unit
                index += 1
        elif word in _UNITS:
            unit = _UNITS[word]
            if value and unit == 0:
                return None
            value += unit
            index += 1
        else:
            return None
    if index != count:
        return None
    return value


def parse_number(text: str) -> int | None:
    """``"12"``, ``"twelve"``, ``"Twenty-Three"`` → int; anything else → None."""
    stripped = text.strip()
    if stripped.isdigit() and stripped.isascii():
        return int(stripped) if len(stripped) <= MAX_DIGITS else None
    words = [w for w in re.split(r"[\s\-]+", stripped) if w]
    return words_to_int(words)


def roman_to_int(text: str) -> int | None:
    """Upper-case Roman numerals only (``ACT II``); lower case is too often an ordinary word."""
    if not text or _ROMAN_RE.fullmatch(text) is None:
        return None
    total = 0
    for current, following in zip(text, [*text[1:], ""], strict=True):
        value = _ROMAN_VALUES[current]
        total += -value if following and _ROMAN_VALUES[following] > value else value
    return total


def take_number(text: str, pos: int, *, allow_roman: bool = False) -> tuple[int, int] | None:
    """Read a number starting exactly at ``pos``; return ``(value, end)`` or None.

    Number words are taken greedily, then the longest prefix that forms a valid number wins.
    That is what lets ``PAGES FOUR-FIVE`` read as a spread (``four`` + ``-five``) while
    ``PAGE TWENTY-FIVE`` reads as 25.
    """
    digits = _DIGITS_RE.match(text, pos)
    if digits is not None:
        return int(digits.group()), digits.end()
    if pos < len(text) and text[pos].isdigit():
        return None  # more than MAX_DIGITS digits: not a page number anybody wrote
    words: list[tuple[str, int]] = []
    cursor = pos
    while True:
        match = _WORD_RE.match(text, cursor)
        if match is None:
            break
        word = match.group().lower()
        if word not in NUMBER_WORDS and not (word == "and" and words and words[-1][0] == "hundred"):
            break
        words.append((word, match.end()))
        if len(words) >= _MAX_NUMBER_WORDS:
            break
        joiner = _JOINER_RE.match(text, match.end())
        if joiner is None:
            break
        cursor = joiner.end()
    for size in range(len(words), 0, -1):
        value = words_to_int([word for word, _ in words[:size]])
        if value is not None:
            end = words[size - 1][1]
            if end < len(text) and (text[end].isalnum() or text[end] == "_"):
                continue
            return value, end
    if allow_roman:
        roman = re.match(r"[IVXLCDM]+\b", text[pos:])
        if roman is not None:
            value = roman_to_int(roman.group())
            if value:
                return value, pos + roman.end()
    return None
