"""Money: integer minor units with an ISO 4217 currency code; never a float, never negative.

Every amount in Bazaar (price, balance, hold, fee, royalty) is a quantity of money owned or owed, so a
negative `Money` makes no sense and is refused; a subtraction that would go below zero raises. Nor does
any amount exceed `MAX_MINOR_UNITS` (10**15, the bound the schemas publish): wallets refuse a move that
would take a balance past it, so every sum the read side keeps fits a bigint.

Splitting rule (`split_sale`): the platform fee and the creator royalty are each
`floor(price * bps / 10000)`; the seller receives the remainder `price - fee - royalty`. Rounding is
therefore always in the seller's favour, and the three parts sum to the price exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.errors import DomainError
from schemas.base import MAX_MINOR_UNITS

BPS_DENOMINATOR = 10_000
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class InvalidMoneyError(DomainError):
    """The amount or currency is malformed."""

    code = "money.invalid"


class MoneyOutOfRangeError(DomainError):
    """The amount is larger than any amount Bazaar handles (`MAX_MINOR_UNITS`)."""

    code = "money.out_of_range"


class NegativeMoneyError(DomainError):
    """The amount would be negative."""

    code = "money.negative"


class CurrencyMismatchError(DomainError):
    """Amounts in different currencies cannot be combined."""

    code = "money.currency_mismatch"


class InvalidBasisPointsError(DomainError):
    """Basis points must lie within 0..10000 (and together not exceed 10000)."""

    code = "money.invalid_bps"


def check_bps(*bps: int) -> None:
    """Refuse basis points outside 0..10000, or shares adding up to more than the whole."""
    for value in bps:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BPS_DENOMINATOR:
            raise InvalidBasisPointsError(f"basis points must be an integer in 0..10000, got {value!r}")
    if sum(bps) > BPS_DENOMINATOR:
        raise InvalidBasisPointsError(f"shares add up to {sum(bps)} basis points, over 10000")


@dataclass(frozen=True, slots=True)
class Money:
    """A non-negative amount of integer minor units (cents) in one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidMoneyError(f"amount must be integer minor units, got {self.amount!r}")
        if not isinstance(self.currency, str) or not _CURRENCY.match(self.currency):
            raise InvalidMoneyError(f"currency must be 3 upper-case letters, got {self.currency!r}")
        if self.amount < 0:
            raise NegativeMoneyError(f"amount must not be negative, got {self.amount}")
        if self.amount > MAX_MINOR_UNITS:
            raise MoneyOutOfRangeError(f"amount must be at most {MAX_MINOR_UNITS}, got {self.amount}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        """No money in the given currency."""
        return cls(0, currency)

    @property
    def is_zero(self) -> bool:
        """Whether the amount is nothing."""
        return self.amount == 0

    def _check_same_currency(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatchError(f"{self.currency} and {other.currency} cannot be combined")

    def __add__(self, other: Money) -> Money:
        self._check_same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check_same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._check_same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._check_same_currency(other)
        return self.amount <= other.amount

    def portion(self, bps: int) -> Money:
        """`floor(amount * bps / 10000)` of this amount."""
        check_bps(bps)
        return Money(self.amount * bps // BPS_DENOMINATOR, self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@dataclass(frozen=True, slots=True)
class SaleSplit:
    """How a sale price is shared: seller proceeds, platform fee and creator royalty."""

    seller: Money
    fee: Money
    royalty: Money

    @property
    def total(self) -> Money:
        """The sum of the three parts (always the price)."""
        return self.seller + self.fee + self.royalty


def split_sale(price: Money, fee_bps: int, royalty_bps: int) -> SaleSplit:
    """Split a price exactly: fee and royalty rounded down, the seller takes the remainder."""
    check_bps(fee_bps, royalty_bps)
    fee = price.portion(fee_bps)
    royalty = price.portion(royalty_bps)
    return SaleSplit(seller=price - fee - royalty, fee=fee, royalty=royalty)
