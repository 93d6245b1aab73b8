// helmrender renders a Helm chart's templates the way `helm template` does, for checking the
// chart where no helm binary can be installed (deploy/validate.sh). It is Go's text/template
// with the sprig function library (Helm's own) plus Helm's include, tpl, required, toYaml,
// fromYaml and toToml-free subset the chart uses; values are read like Helm reads them (YAML
// to JSON: every number a float64) and merged with optional override files.
//
//	helmrender CHART_DIR OUT_DIR [VALUES_OVERRIDE.yaml ...]
//
// Writes OUT_DIR/<template>.yaml for each rendered template (empty ones skipped) and
// OUT_DIR/NOTES.txt. Built offline from Debian's golang-go and golang-*-dev packages in GOPATH
// mode; not a Go module on purpose.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig" // Debian: golang-github-masterminds-sprig-dev (v3)
	"gopkg.in/yaml.v2"
)

func jsonify(v interface{}) interface{} {
	switch x := v.(type) {
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, val := range x {
			m[fmt.Sprint(k)] = jsonify(val)
		}
		return m
	case []interface{}:
		for i := range x {
			x[i] = jsonify(x[i])
		}
		return x
	default:
		return v
	}
}

// readValues parses YAML the way Helm does: through JSON, so numbers become float64.
func readValues(path string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v interface{}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	j, err := json.Marshal(jsonify(v))
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := json.Unmarshal(j, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// merge overlays src onto dst like Helm's coalescing of -f files (maps merge, rest replaces).
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// toYAML is Helm's toYaml: sigs.k8s.io/yaml (JSON, then YAML with sorted keys), no final newline.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return ""
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	var v interface{}
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		m["Error"] = err.Error()
		return m
	}
	if mm, ok := jsonify(v).(map[string]interface{}); ok {
		return mm
	}
	return m
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: helmrender CHART_DIR OUT_DIR [VALUES.yaml ...]")
		os.Exit(2)
	}
	chartDir, outDir := os.Args[1], os.Args[2]
	must := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "helmrender:", err)
			os.Exit(1)
		}
	}
	chart, err := readValues(filepath.Join(chartDir, "Chart.yaml"))
	must(err)
	values, err := readValues(filepath.Join(chartDir, "values.yaml"))
	must(err)
	for _, f := range os.Args[3:] {
		over, err := readValues(f)
		must(err)
		merge(values, over)
	}
	name := fmt.Sprint(chart["name"])

	root := template.New("chart").Option("missingkey=error")
	funcs := sprig.TxtFuncMap()
	funcs["include"] = func(tpl string, data interface{}) (string, error) {
		var b strings.Builder
		err := root.ExecuteTemplate(&b, tpl, data)
		return b.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		err = t.Execute(&b, data)
		return b.String(), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("required: %s", msg)
		}
		return v, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	root.Funcs(funcs)

	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	must(err)
	sort.Strings(files)
	base := name + "/templates"
	for _, f := range files {
		text, err := os.ReadFile(f)
		must(err)
		_, err = root.New(base + "/" + filepath.Base(f)).Parse(string(text))
		must(err)
	}
	must(os.MkdirAll(outDir, 0o755))
	for _, f := range files {
		file := filepath.Base(f)
		if strings.HasPrefix(file, "_") {
			continue
		}
		data := map[string]interface{}{
			"Values":  values,
			"Chart":   map[string]interface{}{"Name": name, "Version": chart["version"], "AppVersion": chart["appVersion"]},
			"Release": map[string]interface{}{"Name": "demo", "Namespace": "default", "Service": "Helm", "IsInstall": true},
			"Template": map[string]interface{}{"Name": base + "/" + file, "BasePath": base},
			"Capabilities": map[string]interface{}{
				"KubeVersion": map[string]interface{}{"Version": "v1.30.0", "Major": "1", "Minor": "30"},
			},
		}
		var b strings.Builder
		must(root.ExecuteTemplate(&b, base+"/"+file, data))
		out := strings.ReplaceAll(b.String(), "<no value>", "")
		if strings.TrimSpace(out) == "" {
			continue
		}
		if !strings.HasSuffix(file, ".txt") {
			out = "---\n# Source: " + base + "/" + file + "\n" + out
		}
		must(os.WriteFile(filepath.Join(outDir, file), []byte(out+"\n"), 0o644))
	}
}
