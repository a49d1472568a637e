"""The customer policy model (pure): a child never loosens, defaults fill the gaps, hours are
read in the customer's time zone, and bad documents get an error naming the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.portal.policy import (
    DEFAULT_POLICY,
    Approval,
    HoursRule,
    Mode,
    Policy,
    PolicyError,
    Reason,
    Window,
    effective_policy,
    parse_policy,
    with_user_choice,
)

STRICT = {Approval: [Approval.NONE, Approval.REQUIRED], Reason: [Reason.OPTIONAL,
                                                                 Reason.REQUIRED],
          Mode: [Mode.FULL, Mode.READ_ONLY]}

windows = st.builds(lambda d, a, b: Window(day=d, start=min(a, b), end=max(a, b) + 1),
                    st.integers(0, 6), st.integers(0, 1438), st.integers(0, 1438))
rules = st.builds(lambda tz, ws: HoursRule(timezone=tz, windows=tuple(ws)),
                  st.sampled_from(["UTC", "America/Sao_Paulo", "Europe/Lisbon", "Asia/Tokyo"]),
                  st.lists(windows, min_size=1, max_size=3))
policies = st.builds(
    Policy,
    approval=st.none() | st.sampled_from(list(Approval)),
    reason=st.none() | st.sampled_from(list(Reason)),
    mode=st.none() | st.sampled_from(list(Mode)),
    allow_panel=st.none() | st.booleans(),
    idle_timeout_minutes=st.none() | st.integers(1, 30),
    hours=st.lists(rules, max_size=2).map(tuple),
    max_sessions_per_device=st.none() | st.integers(1, 100),
    max_sessions_per_user_per_device=st.none() | st.integers(1, 100),
    approval_expiry_minutes=st.none() | st.integers(1, 1440),
)
chains = st.lists(st.none() | policies, min_size=1, max_size=5)  # a root, then children
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                        timezones=st.just(UTC))


def _at_least_as_strict(child: Policy, parent: Policy, when: datetime) -> None:
    for name, kind in (("approval", Approval), ("reason", Reason), ("mode", Mode)):
        order = STRICT[kind]
        assert order.index(getattr(child, name)) >= order.index(getattr(parent, name)), name
    assert not (child.allow_panel and not parent.allow_panel)
    for name in ("idle_timeout_minutes", "max_sessions_per_device",
                 "max_sessions_per_user_per_device", "approval_expiry_minutes"):
        assert getattr(child, name) <= getattr(parent, name), name
    assert not (child.allows_start(when) and not parent.allows_start(when))


@given(chains, policies, instants)
def test_a_child_never_loosens_what_its_chain_decided(chain: list[Policy | None],
                                                      child: Policy, when: datetime) -> None:
    parent = effective_policy(chain)
    _at_least_as_strict(effective_policy([*chain, child]), parent, when)


@given(st.lists(st.none() | policies, max_size=5))
def test_every_setting_of_an_effective_policy_is_set(chain: list[Policy | None]) -> None:
    effective = effective_policy(chain)
    assert all(v is not None for k, v in effective.as_json().items() if k != "hours")


@given(policies)
def test_the_json_form_round_trips(policy: Policy) -> None:
    assert parse_policy(policy.as_json()) == policy


def test_no_policy_anywhere_is_the_default() -> None:
    assert effective_policy([None, None]) == DEFAULT_POLICY
    assert DEFAULT_POLICY.idle_timeout_minutes == 10
    assert (DEFAULT_POLICY.max_sessions_per_device,
            DEFAULT_POLICY.max_sessions_per_user_per_device) == (3, 1)
    assert DEFAULT_POLICY.approval_expiry_minutes == 15


def test_the_root_may_set_a_quota_above_the_default_and_a_child_only_lowers_it() -> None:
    root = Policy(max_sessions_per_user_per_device=3, idle_timeout_minutes=30)
    assert effective_policy([root]).max_sessions_per_user_per_device == 3
    child = Policy(max_sessions_per_user_per_device=5, idle_timeout_minutes=5)
    got = effective_policy([root, child])
    assert (got.max_sessions_per_user_per_device, got.idle_timeout_minutes) == (3, 5)


def test_a_child_cannot_switch_approval_or_read_only_off() -> None:
    root = Policy(approval=Approval.REQUIRED, mode=Mode.READ_ONLY, reason=Reason.REQUIRED)
    child = Policy(approval=Approval.NONE, mode=Mode.FULL, reason=Reason.OPTIONAL)
    got = effective_policy([root, child])
    assert (got.approval, got.mode, got.reason) == (Approval.REQUIRED, Mode.READ_ONLY,
                                                    Reason.REQUIRED)


def test_hours_are_read_in_the_customers_time_zone() -> None:
    # Monday 08:00-18:00 in São Paulo (UTC-3 all year since 2019)
    rule = HoursRule(timezone="America/Sao_Paulo", windows=(Window(day=0, start=480, end=1080),))
    policy = effective_policy([Policy(hours=(rule,))])
    monday = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday
    assert not policy.allows_start(monday.replace(hour=10))  # 07:00 there
    assert policy.allows_start(monday.replace(hour=11))  # 08:00 there
    assert policy.allows_start(monday.replace(hour=20, minute=59))  # 17:59 there
    assert not policy.allows_start(monday.replace(hour=21))  # 18:00 there


def test_a_child_with_its_own_hours_keeps_only_what_both_allow() -> None:
    day = HoursRule(timezone="UTC", windows=(Window(day=0, start=0, end=1440),))
    morning = HoursRule(timezone="UTC", windows=(Window(day=0, start=0, end=720),))
    got = effective_policy([Policy(hours=(day,)), Policy(hours=(morning,))])
    monday = datetime(2026, 11, 30, tzinfo=UTC)
    assert got.allows_start(monday.replace(hour=9))
    assert not got.allows_start(monday.replace(hour=13))


def test_a_user_may_ask_for_read_only_but_not_for_full() -> None:
    strict = effective_policy([Policy(mode=Mode.READ_ONLY)])
    assert with_user_choice(strict, read_only=False).mode is Mode.READ_ONLY
    assert with_user_choice(DEFAULT_POLICY, read_only=True).mode is Mode.READ_ONLY


@pytest.mark.parametrize(("document", "words"), [
    ({"approval": "maybe"}, "approval must be one of none, required"),
    ({"idle_timeout_minutes": 45}, "idle_timeout_minutes must be 1 to 30"),
    ({"idle_timeout_minutes": True}, "whole number"),
    ({"max_sessions_per_device": 0}, "max_sessions_per_device must be 1 to 100"),
    ({"colour": "red"}, "unknown policy field(s) colour"),
    ({"hours": [{"timezone": "Mars/Olympus", "windows": [
        {"day": "mon", "start": "08:00", "end": "18:00"}]}]}, "unknown time zone"),
    ({"hours": [{"timezone": "UTC", "windows": [
        {"day": "mon", "start": "18:00", "end": "08:00"}]}]}, "must start before it ends"),
    ({"hours": [{"timezone": "UTC", "windows": [
        {"day": "mon", "start": "8h", "end": "18:00"}]}]}, "is not a time HH:MM"),
    ({"hours": [{"timezone": "UTC", "windows": []}]}, "at least one window"),
])
def test_bad_policy_documents_are_refused_naming_the_field(document: dict, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(document)
    assert words in str(info.value)
