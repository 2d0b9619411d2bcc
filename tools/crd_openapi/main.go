// crd_openapi writes the OpenAPI v3 document a cluster publishes for a CustomResourceDefinition
// (at /openapi/v3/apis/<group>/<version>, what `kubectl explain` reads), built by the same code
// kube-apiserver runs for it (k8s.io/apiextensions-apiserver's openapi builder). The standalone
// apiextensions-apiserver the tests run does not publish it (kube-apiserver's aggregator does),
// so the tests' router serves this tool's output there. Its input is the list of the CRDs that
// serve the group (a CustomResourceDefinitionList); their documents are merged as
// kube-apiserver merges them. Usage: crd_openapi VERSION < crds.json
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder"
	"k8s.io/kube-openapi/pkg/spec3"
	"sigs.k8s.io/yaml"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 {
		fail(fmt.Errorf("usage: crd_openapi VERSION < crds.json"))
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var crds apiextensionsv1.CustomResourceDefinitionList
	if err := yaml.Unmarshal(in, &crds); err != nil {
		fail(err)
	}
	var documents []*spec3.OpenAPI
	for i := range crds.Items {
		document, err := builder.BuildOpenAPIV3(&crds.Items[i], os.Args[1], builder.Options{V2: false})
		if err != nil {
			fail(err)
		}
		documents = append(documents, document)
	}
	document, err := builder.MergeSpecsV3(documents...)
	if err != nil {
		fail(err)
	}
	out, err := json.Marshal(document)
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
}
