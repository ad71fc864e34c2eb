// kustomize-batch: `kustomize build` for many folders in one process.
//
// Each line of standard input names a folder; for each, one JSON line is written to standard
// output: {"output": "<the YAML kustomize build prints>"} or {"error": "<its error>"}.
// Every folder is built afresh, with the options `kustomize build` uses by default (the
// kustomize/v5 CLI: sigs.k8s.io/kustomize/kustomize/v5/commands/build), so the output is the
// CLI's, byte for byte (tests/validate/test_render_batch.py compares them). What one process
// saves is the start of a new one and the parsing of Kubernetes' OpenAPI schema (for
// strategic-merge patches), which is most of the time of a small kustomization.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/openapi"
)

type result struct {
	Output *string `json:"output,omitempty"`
	Error  *string `json:"error,omitempty"`
}

// build is `kustomize build folder` with the CLI's default flags.
func build(folder string) result {
	// A kustomization's `openapi:` field replaces the process-wide schema: drop it after the
	// build, so that the next folder starts from the built-in one, as a new process would.
	defer resetSchema(openapi.GetSchemaVersion())
	options := krusty.MakeDefaultOptions()
	options.Reorder = krusty.ReorderOptionUnspecified // the CLI's default: legacy order
	resources, err := krusty.MakeKustomizer(options).Run(filesys.MakeFsOnDisk(), folder)
	if err == nil {
		var yaml []byte
		if yaml, err = resources.AsYaml(); err == nil {
			text := string(yaml)
			return result{Output: &text}
		}
	}
	message := err.Error()
	return result{Error: &message}
}

func resetSchema(initial string) {
	if openapi.GetSchemaVersion() != initial {
		openapi.ResetOpenAPI()
	}
}

func main() {
	if len(os.Args) > 1 {
		if os.Args[1] == "version" {
			fmt.Println(version)
			return
		}
		fmt.Fprintln(os.Stderr, "usage: kustomize-batch [version] < folders (one per line)")
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 16*1024*1024)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		if err := out.Encode(build(in.Text())); err != nil {
			fmt.Fprintln(os.Stderr, "kustomize-batch:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "kustomize-batch: reading the folders:", err)
		os.Exit(1)
	}
}
