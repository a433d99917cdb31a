"""Double-entry ledger: result codes, atomic batches, conservation."""

import pytest

from solvency.core.ledger.ledger import (
    CLEARING,
    EXTERNAL,
    INSURANCE,
    ConservationError,
    Ledger,
    Result,
    Transfer,
)


def _ledger() -> Ledger:
    led = Ledger(["USDT", "BTC"])
    assert led.post([Transfer(EXTERNAL, "u:a", "USDT", 1_000)]) is Result.OK
    return led


@pytest.mark.parametrize(
    ("batch", "code"),
    [
        ([Transfer("u:a", "u:b", "USDT", 0)], Result.AMOUNT_NOT_POSITIVE),
        ([Transfer("u:a", "u:b", "USDT", -5)], Result.AMOUNT_NOT_POSITIVE),
        ([Transfer("u:a", "u:b", "USDT", 10**19)], Result.AMOUNT_TOO_LARGE),
        ([Transfer("u:a", "u:a", "USDT", 5)], Result.SAME_ACCOUNT),
        ([Transfer("u:a", "u:b", "DOGE", 5)], Result.UNKNOWN_ASSET),
        ([Transfer(INSURANCE, "u:b", "USDT", 5)], Result.EXCEEDS_BALANCE),
        ([Transfer("u:a", "u:b", "USDT", 5), Transfer(CLEARING, "u:b", "USDT", 1)],
         Result.EXCEEDS_BALANCE),
    ],
    ids=["zero", "negative", "too-large", "same-account", "unknown-asset",
         "insurance-overdraft", "second-leg-fails"],
)
def test_rejections_change_nothing(batch: list[Transfer], code: Result) -> None:
    led = _ledger()
    before = dict(led.balances())
    assert led.post(batch) is code
    assert dict(led.balances()) == before


def test_user_accounts_may_go_negative_like_dydx_quote_balances() -> None:
    led = _ledger()
    assert led.post([Transfer("u:a", "u:b", "USDT", 5_000)]) is Result.OK
    assert led.balance("u:a", "USDT") == -4_000
    assert led.verify() == {"BTC": 0, "USDT": 1_000}


def test_totals_equal_deposits_minus_withdrawals() -> None:
    led = _ledger()
    led.post([Transfer("u:a", EXTERNAL, "USDT", 300)])
    led.post([Transfer("u:a", INSURANCE, "USDT", 100), Transfer(INSURANCE, "u:c", "USDT", 40)])
    assert led.totals()["USDT"] == 700 == led.net_external("USDT")
    assert led.verify()["USDT"] == 700


def test_tampering_is_detected() -> None:
    led = _ledger()
    led._balances[("u:a", "USDT")] += 1  # simulate a bug that creates money
    with pytest.raises(ConservationError, match="USDT"):
        led.verify()


def test_dump_and_load_roundtrip() -> None:
    led = _ledger()
    led.post([Transfer("u:a", "u:b", "USDT", 7)])
    again = Ledger.load(["USDT", "BTC"], led.dump())
    assert dict(again.balances()) == dict(led.balances())
    assert again.dump() == led.dump()
