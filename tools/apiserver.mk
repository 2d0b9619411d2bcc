# The upstream Kubernetes API server the CRD tests run against (tools/build_apiserver.sh):
# Debian sid's packages of the Kubernetes staging libraries, one pinned version. Read by the
# Makefile and by tests/support/real_apiserver.py.
APISERVER_VERSION := 0.36.4-1
APISERVER_GO_PACKAGE := golang-1.27-go
