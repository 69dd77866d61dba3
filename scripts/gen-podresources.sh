#!/bin/sh
# Regenerate collector/podresources/api_pb2.py and api_pb2_grpc.py from api.proto
# (grpcio-tools, pinned in requirements-dev.txt). The generated files are committed so the
# collector image needs only grpcio and protobuf at run time.
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
"$python" -m grpc_tools.protoc -I collector/podresources \
    --python_out=collector/podresources --pyi_out=collector/podresources \
    --grpc_python_out=collector/podresources \
    collector/podresources/api.proto
# protoc writes `import api_pb2`; the package needs a relative import.
sed -i 's/^import api_pb2 as api__pb2$/from collector.podresources import api_pb2 as api__pb2/' \
    collector/podresources/api_pb2_grpc.py
