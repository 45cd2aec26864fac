// Command pulumi-resource-kubernetes is upstream's cmd/pulumi-resource-kubernetes/main.go (v4.25.0) with the
// same two embedded files. Upstream generates them with `go generate` (generate.go) before building, and the
// generated files are not in the module zip, so socle/cluster/build.py writes them into its build copy of this
// folder from the schema.json and terraform-mapping.json that the module does ship: the schema with its
// "version" set to the release and both files minified, which is what upstream's generate.go does.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

var providerName = "kubernetes"

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve(providerName, version.Version, pulumiSchema, terraformMapping)
}
