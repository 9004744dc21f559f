"""Every domain error code answers its intended HTTP status: 409 state conflicts, 422 malformed requests only."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import commands.handlers
import domain
from commands.errors import STATUS_OF, domain_status
from domain.errors import DomainError

# The policy, written out once per code: a new error class without an entry here fails the first test.
EXPECTED = {
    "domain.error": 409, "domain.not_found": 404, "domain.not_party": 403, "domain.naive_timestamp": 422,
    "auth.forbidden": 403, "idempotency.key_reused": 409, "user.email_taken": 409,
    "money.invalid": 422, "money.out_of_range": 422, "money.invalid_bps": 422, "money.negative": 409,
    "money.currency_mismatch": 409,
    "wallet.error": 409, "wallet.insufficient_funds": 409, "wallet.balance_limit": 409,
    "wallet.currency_mismatch": 409, "wallet.hold_exists": 409, "wallet.hold_not_found": 409,
    "wallet.invalid_amount": 422, "wallet.invalid_source": 422, "escrow.wrong_wallet": 409,
    "listing.error": 409, "listing.not_published": 409, "listing.sold": 409, "listing.not_editable": 409,
    "listing.not_draft": 409,
    "listing.not_suspended": 409, "listing.not_sold": 409, "listing.closed": 409, "listing.currency_change": 409,
    "listing.invalid": 422, "listing.not_owner": 403, "listing.auto_boost_off": 409,
    "order.error": 409, "order.invalid_transition": 409, "order.self_purchase": 409, "order.invalid": 422,
    "order.not_party": 403,
    "licence.error": 409, "licence.revoked": 409, "licence.expired": 409, "licence.quota_exceeded": 409,
    "licence.not_renewable": 409, "licence.not_expired": 409, "licence.invalid_terms": 422,
    "trust.error": 409, "trust.duplicate_signal": 409, "trust.invalid_signal": 422,
    "user.error": 409, "user.forgotten": 409, "user.same_role": 409, "user.invalid": 422,
    "review.error": 409, "review.invalid": 422, "review.order_not_released": 409,
    "review.edit_window_closed": 409, "review.reply_exists": 409, "review.exists": 409, "review.not_party": 403,
}


def _every_error_class() -> set[type[DomainError]]:
    for package in (domain, commands.handlers):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    found: set[type[DomainError]] = set()
    todo = [DomainError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_has_an_explicit_status() -> None:
    classes = _every_error_class()
    assert classes - set(STATUS_OF) == set()
    assert {cls.code for cls in classes} == set(EXPECTED)


@pytest.mark.parametrize("cls", sorted(_every_error_class(), key=lambda cls: cls.code), ids=lambda cls: cls.code)
def test_each_code_answers_its_status(cls: type[DomainError]) -> None:
    assert domain_status(cls("refused")) == EXPECTED[cls.code]
