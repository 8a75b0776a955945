"""Wire-level fakes for what cannot be reached from here: local servers speaking the real
protocols to the real clients. Used by tests, evals and benches (installed with the project).

- `fakes.tcp_proxy.TcpProxy`: a loopback TCP proxy that can cut, delay or blackhole a link.
- `fakes.bedrock_converse.ConverseServer`: the Bedrock Runtime Converse API.
- `fakes.databricks_sea.FakeSeaServer`: the Databricks SQL Statement Execution API on DuckDB.
- `fakes.otlp_receiver.OtlpReceiver`: an OTLP/HTTP trace receiver (protobuf, as the OTel exporter sends).
"""
