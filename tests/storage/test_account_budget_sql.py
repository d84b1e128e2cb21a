"""The account budget in SQL: the same leases as the host's, shared by every host, serialized per account."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_dgsentiment.storage.account_budget import LEASES_TABLE, SqlAccountBudget
from airflow_provider_dgsentiment.storage.warehouse import sql_hook
from tests.conftest import SQL_CONN_ID, require_service


def test_leases_split_the_limit_give_back_and_expire(sqlite_db):
    budget = SqlAccountBudget(sql_hook(SQL_CONN_ID, "sql_conn_id"), 10, "http://127.0.0.1:1\0key", ttl=0.3)
    assert budget.lease("a", 10, 0) == 10
    assert budget.lease("b", 10, 0) == 0  # "a" holds every slot
    assert budget.lease("a", 10, 0) == 5
    assert budget.lease("b", 10, 0) == 5
    budget.release("b")
    assert budget.lease("a", 10, 5) == 10
    time.sleep(0.4)  # "a" died without giving its slots back
    assert budget.lease("c", 4, 0) == 4
    connection = budget.hook.get_conn()
    accounts = {row[0] for row in connection.execute(f"SELECT account FROM {LEASES_TABLE}")}
    assert accounts == {budget.account} and "key" not in budget.account


@pytest.mark.integration
def test_postgres_holders_leasing_at_once_never_hold_more_than_the_limit(monkeypatch):
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    monkeypatch.setenv("AIRFLOW_CONN_DGS_TEST_BUDGET_PG", uri)
    hook = sql_hook("dgs_test_budget_pg", "sql_conn_id")
    account = f"race-{time.time()}"
    budget = SqlAccountBudget(hook, 10, account)
    peaks: list[int] = []
    shares: dict[str, int] = {}
    lock = threading.Lock()

    def hold(name: str) -> None:
        for _ in range(15):
            share = budget.lease(name, 10, 0)
            with lock:
                shares[name] = share
                peaks.append(sum(shares.values()))
        budget.release(name)
        with lock:
            shares[name] = 0

    threads = [threading.Thread(target=hold, args=(f"holder-{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert max(peaks) <= 10
    assert max(peaks) >= 8  # and they did use the account
    cursor = hook.get_conn().cursor()
    cursor.execute(f"DELETE FROM {LEASES_TABLE} WHERE account = %s", (budget.account,))
    cursor.connection.commit()
