"""The test suite's helpers, by kind: `servers` (real PostgreSQL/Redis databases, ports,
the service in-process or served, `resolver serve`, the wire fakes), `doubles` (stubs and
`make_ctx` for node and graph tests), `spark` (Spark as the reference engine, row
comparison), `clocks` (FakeClock, `until`). Fixtures live in tests/conftest.py; test
modules import helpers from here, never from conftest or from one another."""
