"""Code generated from proto/engine.proto by grpc_tools (`make proto`); do not edit."""
