"""Shared constants and builders for pure domain tests: a fixed clock and a few parties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from domain.listing import Listing
from domain.money import Money
from domain.wallet import PLATFORM_OWNER_ID, Wallet

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SELLER = UUID(int=1)
BUYER = UUID(int=2)
CREATOR = UUID(int=3)
ADMIN = UUID(int=4)
STRANGER = UUID(int=5)


def at(minutes: int) -> datetime:
    """A time `minutes` after T0."""
    return T0 + timedelta(minutes=minutes)


def make_listing(kind: str = "goods", royalty_bps: int = 500, listing_id: int = 100) -> Listing:
    """A published listing priced 10000 EUR cents with a royalty to CREATOR."""
    item = Listing.draft(listing_id=UUID(int=listing_id), seller_id=SELLER, kind=kind, title="Lamp",
                         description="Old lamp", category="home", price=Money(10_000, "EUR"), now=T0,
                         creator_id=CREATOR if royalty_bps else None, royalty_bps=royalty_bps)
    item.publish(now=at(1))
    return item


def make_wallets(currency: str = "EUR") -> dict[str, Wallet]:
    """Wallets for buyer (funded with 50000), seller, creator and the platform."""
    made = {name: Wallet.open(owner_id=owner, currency=currency, now=T0) for name, owner in
            (("buyer", BUYER), ("seller", SELLER), ("creator", CREATOR), ("platform", PLATFORM_OWNER_ID))}
    made["buyer"].deposit(amount=Money(50_000, currency), reference="psp-1", now=T0)
    return made
