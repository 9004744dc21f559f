"""The command API's errors: each domain error class answers one explicit HTTP status (the table below).

404 the aggregate is unknown, 403 the caller may not, 422 the request itself is malformed, 409 the request is
well-formed but the aggregate's current state refuses it (a transition, a balance, a duplicate). The shape
and the handlers shared with the read API are in `infra.http_errors`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from commands.application import ForbiddenError, IdempotencyKeyReused, VersionConflict
from commands.handlers.users import EmailTakenError
from domain import errors, escrow, licence, listing, money, order, review, trust, user, wallet
from infra.http_errors import error_response
from infra.http_errors import install_error_handlers as install_shared_handlers
from schemas.errors import validation_details

NOT_FOUND, FORBIDDEN, CONFLICT, MALFORMED = 404, 403, 409, 422
STATUS_OF: dict[type[errors.DomainError], int] = {
    errors.DomainError: CONFLICT,
    errors.NotFoundError: NOT_FOUND,
    errors.NotPartyError: FORBIDDEN,
    errors.InvalidTimestampError: MALFORMED,
    ForbiddenError: FORBIDDEN,
    IdempotencyKeyReused: CONFLICT,  # the key is taken by another request: well-formed, but the state refuses
    EmailTakenError: CONFLICT,
    money.InvalidMoneyError: MALFORMED,
    money.MoneyOutOfRangeError: MALFORMED,
    money.InvalidBasisPointsError: MALFORMED,
    money.NegativeMoneyError: CONFLICT,  # a subtraction the current balance cannot cover
    money.CurrencyMismatchError: CONFLICT,
    wallet.WalletError: CONFLICT,
    wallet.InsufficientFundsError: CONFLICT,
    wallet.BalanceLimitError: CONFLICT,
    wallet.WalletCurrencyMismatchError: CONFLICT,
    wallet.HoldExistsError: CONFLICT,
    wallet.HoldNotFoundError: CONFLICT,
    wallet.InvalidWalletAmountError: MALFORMED,
    wallet.InvalidCreditSourceError: MALFORMED,
    escrow.WrongWalletError: CONFLICT,
    listing.ListingError: CONFLICT,
    listing.ListingNotPublishedError: CONFLICT,
    listing.ListingSoldError: CONFLICT,
    listing.ListingNotEditableError: CONFLICT,
    listing.ListingNotDraftError: CONFLICT,
    listing.ListingNotSuspendedError: CONFLICT,
    listing.ListingNotSoldError: CONFLICT,
    listing.ListingClosedError: CONFLICT,
    listing.ListingCurrencyChangeError: CONFLICT,
    listing.InvalidListingError: MALFORMED,
    listing.NotListingOwnerError: FORBIDDEN,
    listing.AutoBoostOffError: CONFLICT,
    order.OrderError: CONFLICT,
    order.InvalidOrderTransitionError: CONFLICT,
    order.SelfPurchaseError: CONFLICT,
    order.InvalidOrderError: MALFORMED,
    order.NotOrderPartyError: FORBIDDEN,
    licence.LicenceError: CONFLICT,
    licence.LicenceRevokedError: CONFLICT,
    licence.LicenceExpiredError: CONFLICT,
    licence.QuotaExceededError: CONFLICT,
    licence.NotRenewableError: CONFLICT,
    licence.NotExpiredError: CONFLICT,
    licence.InvalidLicenceTermsError: MALFORMED,
    trust.TrustError: CONFLICT,
    trust.DuplicateSignalError: CONFLICT,
    trust.InvalidSignalError: MALFORMED,
    user.UserError: CONFLICT,
    user.UserForgottenError: CONFLICT,
    user.SameRoleError: CONFLICT,
    user.InvalidUserError: MALFORMED,
    review.ReviewError: CONFLICT,
    review.InvalidReviewError: MALFORMED,
    review.OrderNotReviewableError: CONFLICT,
    review.EditWindowClosedError: CONFLICT,
    review.ReplyExistsError: CONFLICT,
    review.ReviewExistsError: CONFLICT,
    review.NotReviewPartyError: FORBIDDEN,
}


def domain_status(error: errors.DomainError) -> int:
    """The status of a domain error: its class's entry, else its nearest listed base class's."""
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return CONFLICT


def install_error_handlers(app: FastAPI) -> None:
    """The shared handlers plus the command side's own: commands, stale versions, domain rules."""
    install_shared_handlers(app)

    @app.exception_handler(ValidationError)
    async def _command_invalid(_: Request, exc: ValidationError) -> JSONResponse:
        # A command built from body and path refused the values (cross-field rules run after parsing).
        return error_response(422, "request.invalid", "the command is malformed", validation_details(exc.errors()))

    @app.exception_handler(VersionConflict)
    async def _conflict(_: Request, exc: VersionConflict) -> JSONResponse:
        details = {"aggregate_id": str(exc.aggregate_id), "current_version": exc.current_version}
        return error_response(409, "version.conflict", str(exc), details)

    @app.exception_handler(errors.DomainError)
    async def _domain(_: Request, exc: errors.DomainError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=domain_status(exc))
