"""The RLJob CRD, shipped as package data (kubectl apply -f crds/ reads only the YAML)."""
