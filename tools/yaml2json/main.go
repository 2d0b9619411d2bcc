// yaml2json converts YAML on stdin to JSON on stdout exactly as kubectl does before it sends
// a manifest to the API server (sigs.k8s.io/yaml.YAMLToJSON, go-yaml v2's scalar rules).
// Built next to the API server by tools/build_apiserver.sh; tests/apiserver use it as the
// reference for seesaw.manifest_yaml.
package main

import (
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := yaml.YAMLToJSON(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
