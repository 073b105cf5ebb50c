"""Membership numbers: random digits with a Luhn check digit, so typos are caught on entry."""

import secrets


def luhn_check_digit(digits: str) -> str:
    total = 0
    # Double every second digit counting from the right of the final number,
    # i.e. from the rightmost digit of the payload.
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_valid_membership_number(number: str) -> bool:
    if not number.isdigit() or len(number) < 2:
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def new_membership_number(length: int = 10) -> str:
    """A random number (not sequential, so numbers cannot be guessed from each other)."""
    payload = str(secrets.randbelow(9 * 10 ** (length - 2)) + 10 ** (length - 2))
    return payload + luhn_check_digit(payload)
