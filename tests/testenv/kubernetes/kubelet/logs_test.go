package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

func TestValidateContainerLogStatus(t *testing.T) {
	term := func(id string) *v1.ContainerStateTerminated { return &v1.ContainerStateTerminated{ContainerID: id} }
	cases := []struct {
		name     string
		status   v1.ContainerStatus
		previous bool
		wantID   string
		wantErr  string
	}{
		{"running", v1.ContainerStatus{Name: "c", ContainerID: "containerd://a", State: running()}, false, "containerd://a", ""},
		{"waiting", v1.ContainerStatus{Name: "c", State: waiting("ContainerCreating")}, false, "",
			`container "c" in pod "p" is waiting to start: ContainerCreating`},
		{"never pull", v1.ContainerStatus{Name: "c", State: waiting("ErrImageNeverPull")}, false, "",
			`container "c" in pod "p" is waiting to start: ErrImageNeverPull`},
		{"pull error", v1.ContainerStatus{Name: "c", State: waiting("ErrImagePull")}, false, "",
			`container "c" in pod "p" is waiting to start: image can't be pulled`},
		{"pull back-off", v1.ContainerStatus{Name: "c", State: waiting("ImagePullBackOff")}, false, "",
			`container "c" in pod "p" is waiting to start: trying and failing to pull image`},
		{"no previous", v1.ContainerStatus{Name: "c", State: running()}, true, "",
			`previous terminated container "c" in pod "p" not found`},
		{"previous", v1.ContainerStatus{Name: "c", State: running(), LastTerminationState: v1.ContainerState{Terminated: term("containerd://old")}}, true, "containerd://old", ""},
		{"crash loop shows the last run", v1.ContainerStatus{Name: "c", State: waiting("CrashLoopBackOff"), LastTerminationState: v1.ContainerState{Terminated: term("containerd://old")}}, false, "containerd://old", ""},
		{"terminated", v1.ContainerStatus{Name: "c", State: v1.ContainerState{Terminated: term("containerd://t")}}, false, "containerd://t", ""},
		{"terminated without id", v1.ContainerStatus{Name: "c", State: v1.ContainerState{Terminated: term("")}}, false, "",
			`container "c" in pod "p" is terminated`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &v1.PodStatus{ContainerStatuses: []v1.ContainerStatus{tc.status}}
			id, err := validateContainerLogStatus("p", st, "c", tc.previous)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || id != tc.wantID {
				t.Fatalf("id %q err %v", id, err)
			}
		})
	}
	if _, err := validateContainerLogStatus("p", &v1.PodStatus{}, "x", false); err == nil || err.Error() != `container "x" in pod "p" is not available` {
		t.Errorf("unknown container: %v", err)
	}
}

func TestCRILogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	f, err := openCRILogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, errw := f.stream("stdout"), f.stream("stderr")
	_, _ = out.Write([]byte("one\ntw"))
	_, _ = errw.Write([]byte("warning\n"))
	_, _ = out.Write([]byte("o\nthree"))
	_ = f.Close()
	r, _ := os.Open(path)
	defer r.Close()
	entries := parseCRILog(r)
	var texts []string
	for _, e := range entries {
		texts = append(texts, e.Stream+":"+e.Text)
	}
	if strings.Join(texts, ",") != "stdout:one,stderr:warning,stdout:two,stdout:three" {
		t.Errorf("entries %v", texts)
	}
	partial := "2026-01-01T00:00:00Z stdout P abc\n2026-01-01T00:00:00Z stdout F def\n"
	if e := parseCRILog(strings.NewReader(partial)); len(e) != 1 || e[0].Text != "abcdef" {
		t.Errorf("partial lines are joined: %+v", e)
	}
}

func TestRenderLogs(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	entries := []logEntry{{t0, "stdout", "a"}, {t0.Add(time.Second), "stdout", "b"}, {t0.Add(2 * time.Second), "stderr", "c"}}
	two := int64(2)
	if got := string(renderLogs(entries, logOptions{TailLines: &two})); got != "b\nc\n" {
		t.Errorf("tail: %q", got)
	}
	if got := string(renderLogs(entries[:1], logOptions{Timestamps: true})); got != "2026-01-01T00:00:00Z a\n" {
		t.Errorf("timestamps: %q", got)
	}
	since := t0.Add(time.Second)
	if got := string(renderLogs(entries, logOptions{SinceTime: &since})); got != "b\nc\n" {
		t.Errorf("since: %q", got)
	}
	three := int64(3)
	if got := string(renderLogs(entries, logOptions{LimitBytes: &three})); got != "a\nb" {
		t.Errorf("limit: %q", got)
	}
}

func testRegistry(t *testing.T) *logRegistry {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	if err := writeLogLines(path, time.Now(), []string{"l1", "l2", "l3"}); err != nil {
		t.Fatal(err)
	}
	reg := newLogRegistry()
	reg.Register("ns", "p", "uid1", func() logTarget {
		return logTarget{PodName: "p", Containers: []string{"c", "w"}, Paths: map[string]string{"containerd://a": path},
			Status: v1.PodStatus{ContainerStatuses: []v1.ContainerStatus{
				{Name: "c", ContainerID: "containerd://a", State: running()},
				{Name: "w", State: waiting("CreateContainerConfigError")},
			}}}
	})
	return reg
}

func TestContainerLogs(t *testing.T) {
	reg := testRegistry(t)
	now := time.Now()
	body, err := containerLogs(reg, "ns", "p", "c", url.Values{"tailLines": {"2"}}, now)
	if err != nil || string(body) != "l2\nl3\n" {
		t.Errorf("tail: %q %v", body, err)
	}
	body, err = containerLogs(reg, "ns", "p", "c", url.Values{"tail": {"all"}, "follow": {"true"}}, now)
	if err != nil || string(body) != "l1\nl2\nl3\n" {
		t.Errorf("follow: %q %v", body, err)
	}
	check := func(q url.Values, pod, container string, code int, msg string) {
		t.Helper()
		_, err := containerLogs(reg, "ns", pod, container, q, now)
		he, ok := err.(*httpError)
		if !ok || he.code != code || he.msg != msg {
			t.Errorf("%s/%s %v: got %v", pod, container, q, err)
		}
	}
	check(nil, "p", "w", 400, `container "w" in pod "p" is waiting to start: CreateContainerConfigError`)
	check(url.Values{"previous": {"true"}}, "p", "c", 400, `previous terminated container "c" in pod "p" not found`)
	check(nil, "nope", "c", 404, `pod "nope" does not exist`)
	check(nil, "p", "nope", 404, `container "nope" not found in pod "p"`)
	check(url.Values{"tailLines": {"x"}}, "p", "c", 400, `{"message": "Unable to decode query."}`)
	check(url.Values{"sinceSeconds": {"0"}}, "p", "c", 422, `{"message": "Invalid request."}`)
}

func TestKubeletMux(t *testing.T) {
	srv := httptest.NewUnstartedServer(newKubeletMux(testRegistry(t)))
	cert, err := selfSignedCert("node", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(path string) (int, string) {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok" {
		t.Errorf("healthz %d %q", code, body)
	}
	if code, body := get("/containerLogs/ns/p/c?timestamps=false"); code != 200 || body != "l1\nl2\nl3\n" {
		t.Errorf("logs %d %q", code, body)
	}
	if code, body := get("/containerLogs/ns/p/w"); code != 400 || !strings.Contains(body, "is waiting to start: CreateContainerConfigError") {
		t.Errorf("waiting %d %q", code, body)
	}
	if code, _ := get("/pods"); code != 404 {
		t.Errorf("other paths: %d", code)
	}
}

func TestLogRegistryNewest(t *testing.T) {
	reg := newLogRegistry()
	reg.Register("ns", "p", "old", func() logTarget { return logTarget{PodName: "old"} })
	reg.Register("ns", "p", "new", func() logTarget { return logTarget{PodName: "new"} })
	if got, _ := reg.Lookup("ns", "p"); got.PodName != "new" {
		t.Errorf("newest wins: %s", got.PodName)
	}
	reg.Unregister("ns", "p", "new")
	if got, _ := reg.Lookup("ns", "p"); got.PodName != "old" {
		t.Errorf("after unregister: %s", got.PodName)
	}
	reg.Unregister("ns", "p", "old")
	if _, ok := reg.Lookup("ns", "p"); ok {
		t.Error("empty registry")
	}
}
