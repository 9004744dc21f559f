"""Escrow: the money-moving use cases over an Order, its Listing and the Wallets involved.

Each function only calls aggregate methods and returns an `EscrowResult`; the caller saves
`result.aggregates` in ONE `Application.save(*result.aggregates)` so that the order and every wallet
change are appended atomically (or not at all). Money is conserved exactly: what leaves a hold is
credited, in the same call, to wallets whose credits sum to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.chain import ChainedAggregate
from domain.errors import DomainError
from domain.listing import Listing, ListingKind, ListingStatus
from domain.money import Money
from domain.order import DisputeOutcome, Order
from domain.wallet import PLATFORM_OWNER_ID, CreditSource, Wallet


class WrongWalletError(DomainError):
    """A wallet passed in does not belong to the party it should (or has another currency)."""

    code = "escrow.wrong_wallet"


@dataclass(frozen=True)
class EscrowResult:
    """The order plus every aggregate changed with it, to be saved together."""

    order: Order
    aggregates: tuple[ChainedAggregate, ...]


def _result(order: Order, *others: ChainedAggregate | None) -> EscrowResult:
    """Collect the changed aggregates once each (the seller may also be the creator)."""
    unique: dict[int, ChainedAggregate] = {id(order): order}
    for agg in others:
        if agg is not None:
            unique.setdefault(id(agg), agg)
    return EscrowResult(order=order, aggregates=tuple(unique.values()))


def check_wallet(wallet: Wallet, owner_id: UUID, currency: str, role: str) -> None:
    """The wallet must be the owner's wallet in the order's currency."""
    if wallet.owner_id != owner_id or wallet.currency != currency:
        raise WrongWalletError(f"{role} wallet does not match", wallet_id=wallet.id, owner_id=owner_id)


def place_order(*, order_id: UUID, listing: Listing, buyer_id: UUID, buyer_wallet: Wallet, fee_bps: int,
                now: datetime) -> EscrowResult:
    """Place an order for a published listing and hold its price from the buyer's wallet.

    Unique goods are marked sold at once so they cannot be bought twice; a refund puts them back.
    """
    listing.check_can_be_ordered(buyer_wallet.currency)
    check_wallet(buyer_wallet, buyer_id, listing.price.currency, "buyer")
    order = Order.place(
        order_id=order_id, buyer_id=buyer_id, seller_id=listing.seller_id, listing_id=listing.id,
        price=listing.price, fee_bps=fee_bps, royalty_bps=listing.royalty_bps, creator_id=listing.creator_id,
        now=now,
    )
    buyer_wallet.hold(order_id=order_id, amount=order.price, now=now)
    order.hold_funds(now=now)
    changed_listing = None
    if listing.kind == ListingKind.GOODS:
        listing.mark_sold(order_id=order_id, now=now)
        changed_listing = listing
    return _result(order, buyer_wallet, changed_listing)


def check_release_wallets(order: Order, buyer_wallet: Wallet, seller_wallet: Wallet, platform_wallet: Wallet,
                          creator_wallet: Wallet | None) -> None:
    """All wallets a release pays must be the right parties' wallets in the order's currency."""
    currency = order.price.currency
    check_wallet(buyer_wallet, order.buyer_id, currency, "buyer")
    check_wallet(seller_wallet, order.seller_id, currency, "seller")
    check_wallet(platform_wallet, PLATFORM_OWNER_ID, currency, "platform")
    if not order.sale_split.royalty.is_zero:
        if creator_wallet is None or order.creator_id is None:
            raise WrongWalletError("a creator wallet is needed for the royalty", order_id=order.id)
        check_wallet(creator_wallet, order.creator_id, currency, "creator")


def _payouts(order: Order, seller_wallet: Wallet, platform_wallet: Wallet,
             creator_wallet: Wallet | None) -> tuple[tuple[Wallet | None, Money, CreditSource], ...]:
    """Who a release pays what: seller proceeds, platform fee, creator royalty."""
    split = order.sale_split
    return (
        (seller_wallet, split.seller, CreditSource.SALE),
        (platform_wallet, split.fee, CreditSource.FEE),
        (creator_wallet, split.royalty, CreditSource.ROYALTY),
    )


def _check_room(payouts: tuple[tuple[Wallet | None, Money, CreditSource], ...]) -> None:
    """Every payee can take what it is owed (summed per wallet: a seller may also be the creator)."""
    owed: dict[object, tuple[Wallet, int, str]] = {}
    for wallet, amount, _ in payouts:
        if wallet is not None and not amount.is_zero:
            _, total, currency = owed.get(wallet.id, (wallet, 0, amount.currency))
            owed[wallet.id] = (wallet, total + amount.amount, currency)
    for wallet, total, currency in owed.values():
        wallet.check_room_for(Money(total, currency))


def release(order: Order, *, buyer_wallet: Wallet, seller_wallet: Wallet, platform_wallet: Wallet,
            creator_wallet: Wallet | None, now: datetime) -> EscrowResult:
    """Pay a release-due order out: seller proceeds, platform fee, creator royalty (sum = price)."""
    check_release_wallets(order, buyer_wallet, seller_wallet, platform_wallet, creator_wallet)
    split = order.sale_split
    payouts = _payouts(order, seller_wallet, platform_wallet, creator_wallet)
    _check_room(payouts)  # before anything changes: a refused payout must leave every aggregate as it was
    order.release(now=now)
    buyer_wallet.release_hold(order_id=order.id, now=now)
    for wallet, amount, source in payouts:
        if wallet is not None and not amount.is_zero:
            wallet.credit(amount=amount, source=source, order_id=order.id, now=now)
    used_creator = creator_wallet if not split.royalty.is_zero else None
    return _result(order, buyer_wallet, seller_wallet, platform_wallet, used_creator)


def refund(order: Order, *, buyer_wallet: Wallet, listing: Listing | None, now: datetime) -> EscrowResult:
    """Return a refund-due order's escrow to the buyer; unique goods go back on sale."""
    check_wallet(buyer_wallet, order.buyer_id, order.price.currency, "buyer")
    order.refund(now=now)
    amount = buyer_wallet.release_hold(order_id=order.id, now=now)
    buyer_wallet.credit(amount=amount, source=CreditSource.REFUND, order_id=order.id, now=now)
    relisted = None
    if listing is not None and listing.status == ListingStatus.SOLD and listing.sold_order_id == order.id:
        listing.relist(now=now)
        relisted = listing
    return _result(order, buyer_wallet, relisted)


def confirm_delivery(order: Order, *, by: UUID, buyer_wallet: Wallet, seller_wallet: Wallet,
                     platform_wallet: Wallet, creator_wallet: Wallet | None, now: datetime) -> EscrowResult:
    """The buyer confirms delivery and the escrow is released at once."""
    check_release_wallets(order, buyer_wallet, seller_wallet, platform_wallet, creator_wallet)
    order.confirm_delivery(by=by, now=now)
    return release(order, buyer_wallet=buyer_wallet, seller_wallet=seller_wallet,
                   platform_wallet=platform_wallet, creator_wallet=creator_wallet, now=now)


def cancel(order: Order, *, by: UUID, reason: str, buyer_wallet: Wallet, listing: Listing | None,
           now: datetime) -> EscrowResult:
    """Cancel an unshipped order and refund what was held."""
    check_wallet(buyer_wallet, order.buyer_id, order.price.currency, "buyer")
    order.cancel(by=by, reason=reason, now=now)
    if order.settlement_due == "refund":
        return refund(order, buyer_wallet=buyer_wallet, listing=listing, now=now)
    return _result(order)


def resolve_dispute(order: Order, *, outcome: DisputeOutcome | str, resolver_id: UUID, note: str,
                    buyer_wallet: Wallet, seller_wallet: Wallet, platform_wallet: Wallet,
                    creator_wallet: Wallet | None, listing: Listing | None, now: datetime) -> EscrowResult:
    """Settle a dispute and move the money the way it was decided."""
    check_release_wallets(order, buyer_wallet, seller_wallet, platform_wallet, creator_wallet)
    if outcome == DisputeOutcome.RELEASE:
        _check_room(_payouts(order, seller_wallet, platform_wallet, creator_wallet))  # before the order moves
    order.resolve_dispute(outcome=outcome, resolver_id=resolver_id, note=note, now=now)
    if order.settlement_due == DisputeOutcome.REFUND:
        return refund(order, buyer_wallet=buyer_wallet, listing=listing, now=now)
    return release(order, buyer_wallet=buyer_wallet, seller_wallet=seller_wallet,
                   platform_wallet=platform_wallet, creator_wallet=creator_wallet, now=now)
