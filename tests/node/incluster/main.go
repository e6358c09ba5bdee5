// Command incluster calls the apiserver from inside a pod the way an in-cluster client does: with
// the pod's ServiceAccount token, verifying the apiserver's certificate against the pod's CA.
//
// Each argument is a base URL; "env" stands for https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
// (what client-go's and the Python client's in-cluster configs use). For each it prints one line:
// the URL, the apiserver's version and the user the apiserver authenticated. Any error (DNS, TLS
// verification, HTTP status) is printed and the command exits 1.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const account = "/var/run/secrets/kubernetes.io/serviceaccount/"

func call(client *http.Client, token, method, url string, body []byte, out any) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

func check(client *http.Client, token, base string) error {
	var version struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := call(client, token, http.MethodGet, base+"/version", nil, &version); err != nil {
		return err
	}
	review := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	var who struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	url := base + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
	if err := call(client, token, http.MethodPost, url, review, &who); err != nil {
		return err
	}
	fmt.Printf("url=%s version=%s user=%s\n", base, version.GitVersion, who.Status.UserInfo.Username)
	return nil
}

func main() {
	token, err := os.ReadFile(account + "token")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	ca, err := os.ReadFile(account + "ca.crt")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		fmt.Println("error: no certificate in", account+"ca.crt")
		os.Exit(1)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
	}
	failed := false
	for _, base := range os.Args[1:] {
		if base == "env" {
			host := net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
			base = "https://" + host
		}
		if err := check(client, strings.TrimSpace(string(token)), base); err != nil {
			fmt.Printf("url=%s error=%v\n", base, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
