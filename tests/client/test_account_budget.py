"""The account budget: fair shares, leases that only take free slots, expiry, and engines that share one."""

from __future__ import annotations

import time

import pytest

from airflow_provider_dgsentiment.client.account_budget import HostAccountBudget, Lease, fair_shares, next_share


@pytest.mark.parametrize(
    ("limit", "wants", "shares"),
    [
        (10, {"a": 10, "b": 10, "c": 10, "d": 10}, {"a": 3, "b": 3, "c": 2, "d": 2}),
        (10, {"a": 1, "b": 10}, {"a": 1, "b": 9}),
        (10, {"a": 2, "b": 3}, {"a": 2, "b": 3}),
        (3, {"a": 5, "b": 5, "c": 5, "d": 5}, {"a": 1, "b": 1, "c": 1, "d": 0}),
        (10, {"a": 0, "b": 4}, {"a": 0, "b": 4}),
    ],
)
def test_fair_shares_are_max_min_fair_in_whole_slots(limit, wants, shares):
    assert fair_shares(limit, wants) == shares


def test_a_newcomer_takes_only_the_slots_nobody_holds():
    others = {"a": Lease(held=8, want=10, expires=0.0)}
    assert next_share(10, "b", 10, 0, others) == (2, 2)
    # "a" renews and gives back down to its fair part; "b" then gets the rest of its part.
    assert next_share(10, "a", 10, 8, {"b": Lease(2, 10, 0.0)}) == (5, 8)  # held stays 8 while 8 run
    assert next_share(10, "b", 10, 2, {"a": Lease(5, 10, 0.0)}) == (5, 5)


def test_host_budget_splits_the_limit_and_gives_slots_back(tmp_path):
    budget = HostAccountBudget(10, "http://127.0.0.1:1\0key", folder=tmp_path)
    assert budget.lease("a", 10, 0) == 10
    assert budget.lease("b", 10, 0) == 0  # "a" holds all ten
    assert budget.lease("a", 10, 0) == 5
    assert budget.lease("b", 10, 0) == 5
    budget.release("a")
    assert budget.lease("b", 10, 5) == 10
    # Only a hash of the account names the file, readable by its owner alone.
    (path,) = tmp_path.iterdir()
    assert "key" not in path.name and path.stat().st_mode & 0o077 == 0


def test_a_dead_holders_lease_expires(tmp_path):
    budget = HostAccountBudget(4, "account", folder=tmp_path, ttl=0.2)
    assert budget.lease("dead", 4, 4) == 4
    assert budget.lease("alive", 4, 0) == 0
    time.sleep(0.3)  # "dead" never renews
    assert budget.lease("alive", 4, 0) == 4


def test_a_run_asking_more_than_the_connection_says_the_account_allows_that_many(tmp_path):
    # The connection says 10; one engine whose run asks for 100 is not held at 10.
    budget = HostAccountBudget(10, "account", folder=tmp_path)
    assert budget.lease("alone", 100, 0) == 100
    budget.release("alone")
    # Four engines asking for the connection's 10 share those 10.
    shares = [budget.lease(name, 10, 0) for name in "abcd"]
    assert shares[0] == 10 and sum(shares) == 10
    assert sum(budget.lease(name, 10, 0) for name in "abcd") <= 10
