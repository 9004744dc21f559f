"""Money: integer minor units, currency checks, exact splitting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.money import (
    CurrencyMismatchError,
    InvalidBasisPointsError,
    InvalidMoneyError,
    Money,
    NegativeMoneyError,
    check_bps,
    split_sale,
)


def test_add_and_subtract_same_currency() -> None:
    assert Money(150, "EUR") + Money(50, "EUR") == Money(200, "EUR")
    assert Money(150, "EUR") - Money(50, "EUR") == Money(100, "EUR")


def test_currency_mismatch_refused() -> None:
    with pytest.raises(CurrencyMismatchError) as info:
        Money(1, "EUR") + Money(1, "USD")
    assert info.value.code == "money.currency_mismatch"


def test_negative_result_refused() -> None:
    with pytest.raises(NegativeMoneyError):
        Money(1, "EUR") - Money(2, "EUR")


@pytest.mark.parametrize("amount", [1.5, "10", True, None])
def test_non_integer_amount_refused(amount: object) -> None:
    with pytest.raises(InvalidMoneyError):
        Money(amount, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["eur", "EU", "EURO", "", "E1R"])
def test_bad_currency_refused(currency: str) -> None:
    with pytest.raises(InvalidMoneyError):
        Money(1, currency)


def test_split_rounds_fee_and_royalty_down_seller_takes_remainder() -> None:
    split = split_sale(Money(999, "EUR"), fee_bps=1000, royalty_bps=250)
    assert split.fee == Money(99, "EUR")  # 99.9 rounded down
    assert split.royalty == Money(24, "EUR")  # 24.975 rounded down
    assert split.seller == Money(876, "EUR")
    assert split.total == Money(999, "EUR")


@pytest.mark.parametrize("bps", [(-1, 0), (0, 10_001), (6000, 5000)])
def test_bad_basis_points_refused(bps: tuple[int, int]) -> None:
    with pytest.raises(InvalidBasisPointsError):
        check_bps(*bps)


# Fee and royalty together within 10,000 bps, drawn that way so no example is discarded.
fee_and_royalty = st.integers(0, 10_000).flatmap(lambda fee: st.tuples(st.just(fee), st.integers(0, 10_000 - fee)))


@given(amount=st.integers(0, 10**15), bps=fee_and_royalty)
def test_split_never_creates_or_loses_a_minor_unit(amount: int, bps: tuple[int, int]) -> None:
    fee, royalty = bps
    price = Money(amount, "EUR")
    split = split_sale(price, fee, royalty)
    assert split.total == price
    assert split.fee.amount * 10_000 <= amount * fee < (split.fee.amount + 1) * 10_000
