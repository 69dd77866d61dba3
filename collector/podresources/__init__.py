"""Generated protobuf and gRPC modules of the kubelet pod-resources API (see api.proto).

Importing api_pb2_grpc needs grpcio; collector/sources/podresources.py imports it only where the
kubelet's socket exists, so a collector without grpcio still runs everywhere else.
"""
