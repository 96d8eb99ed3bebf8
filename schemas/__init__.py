"""The Avro schemas as package data: inputs per survey and version, and our outputs."""
