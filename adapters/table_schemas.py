"""The columns the LLM prompt shows, read from the configured warehouse's own catalog.

Read once at boot and again whenever the registry reloads (a catalog change may name
new columns), cached in between: generation never waits for the catalog. A read that
fails keeps what was known (and is retried at the next reload or `refresh()`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from domain.failures import WarehouseFailure
from domain.ports import TableSchema, Warehouse

log = logging.getLogger(__name__)


class WarehouseTableSchemas:
    """`domain.ports.TableSchemas` over `warehouse.describe`, for the tables `tables()` names."""

    def __init__(self, warehouse: Warehouse, tables: Callable[[], frozenset[str]]) -> None:
        self._warehouse = warehouse
        self._tables = tables
        self._current: tuple[TableSchema, ...] = ()
        self.refreshes = 0

    def current(self) -> tuple[TableSchema, ...]:
        return self._current

    async def refresh(self) -> tuple[TableSchema, ...]:
        try:
            found = await self._warehouse.describe(sorted(self._tables()))
        except WarehouseFailure as exc:
            log.warning(
                "table schemas not refreshed (%s): keeping %d known", exc.detail, len(self._current)
            )
            return self._current
        self._current = tuple(sorted(found, key=lambda t: t.name))
        self.refreshes += 1
        missing = sorted(self._tables() - {t.name for t in self._current})
        if missing:
            log.warning("the warehouse does not describe allowlisted tables %s", missing)
        return self._current
