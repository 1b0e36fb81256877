package main

// Container log files in the kubelet's layout and the CRI logging format:
// /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restartCount>.log
// (pkg/kubelet/kuberuntime/helpers.go BuildContainerLogsDirectory, kuberuntime_container.go
// buildContainerLogsPath), one line per entry: "<RFC3339Nano> <stdout|stderr> <F|P> <text>"
// (pkg/kubelet/kuberuntime/logs/logs.go). `kind export logs` collects /var/log, so they end
// up in its archive as on a real node.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func podLogsDir(root, namespace, name string, uid types.UID) string {
	return filepath.Join(root, strings.Join([]string{namespace, name, string(uid)}, "_"))
}

func containerLogPath(root, namespace, name string, uid types.UID, container string, restartCount int32) string {
	return filepath.Join(podLogsDir(root, namespace, name, uid), container, fmt.Sprintf("%d.log", restartCount))
}

func formatCRILine(t time.Time, stream, text string) string {
	return fmt.Sprintf("%s %s F %s\n", t.UTC().Format(time.RFC3339Nano), stream, text)
}

// writeLogLines writes a simulated container's whole output at once.
func writeLogLines(path string, t time.Time, lines []string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(formatCRILine(t, "stdout", l))
	}
	return os.WriteFile(path, []byte(b.String()), 0o640)
}

// criLogFile is the shared file of a process's stdout and stderr.
type criLogFile struct {
	mu      sync.Mutex
	f       *os.File
	writers []*criLineWriter
}

func openCRILogFile(path string) (*criLogFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &criLogFile{f: f}, nil
}

// Close writes what the streams hold without a final newline, then closes the file.
func (l *criLogFile) Close() error {
	for _, w := range l.writers {
		w.Flush()
	}
	return l.f.Close()
}

// stream returns a writer that turns what a process prints into CRI log lines.
func (l *criLogFile) stream(name string) *criLineWriter {
	w := &criLineWriter{file: l, stream: name}
	l.writers = append(l.writers, w)
	return w
}

type criLineWriter struct {
	file    *criLogFile
	stream  string
	pending []byte
}

func (w *criLineWriter) Write(p []byte) (int, error) {
	w.pending = append(w.pending, p...)
	for {
		i := bytes.IndexByte(w.pending, '\n')
		if i < 0 {
			break
		}
		w.emit(string(w.pending[:i]), "F")
		w.pending = w.pending[i+1:]
	}
	if len(w.pending) > 16*1024 { // a very long line without newline: a partial entry
		w.emit(string(w.pending), "P")
		w.pending = nil
	}
	return len(p), nil
}

// Flush writes what is left without a newline.
func (w *criLineWriter) Flush() {
	if len(w.pending) > 0 {
		w.emit(string(w.pending), "F")
		w.pending = nil
	}
}

func (w *criLineWriter) emit(text, tag string) {
	w.file.mu.Lock()
	defer w.file.mu.Unlock()
	fmt.Fprintf(w.file.f, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), w.stream, tag, strings.TrimSuffix(text, "\r"))
}

type logEntry struct {
	Time   time.Time
	Stream string
	Text   string // without newline
}

// parseCRILog reads CRI log lines, joining partial (P) entries; malformed lines are kept as
// plain text.
func parseCRILog(r io.Reader) []logEntry {
	var out []logEntry
	var partial *logEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		parts := strings.SplitN(line, " ", 4)
		if len(parts) < 3 {
			out = append(out, logEntry{Text: line})
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil || (parts[2] != "F" && parts[2] != "P") {
			out = append(out, logEntry{Text: line})
			continue
		}
		text := ""
		if len(parts) == 4 {
			text = parts[3]
		}
		if partial != nil {
			partial.Text += text
		} else {
			partial = &logEntry{Time: t, Stream: parts[1], Text: text}
		}
		if parts[2] == "F" {
			out = append(out, *partial)
			partial = nil
		}
	}
	if partial != nil {
		out = append(out, *partial)
	}
	return out
}

// logOptions are the v1.PodLogOptions the log endpoint honours.
type logOptions struct {
	TailLines  *int64
	LimitBytes *int64
	SinceTime  *time.Time
	Timestamps bool
}

// renderLogs applies the options like the kubelet's ReadLogs (kuberuntime/logs/logs.go):
// since first, then the last tailLines entries, timestamps as RFC3339Nano prefixes, and
// limitBytes on the output.
func renderLogs(entries []logEntry, o logOptions) []byte {
	var kept []logEntry
	for _, e := range entries {
		if o.SinceTime != nil && !e.Time.IsZero() && e.Time.Before(*o.SinceTime) {
			continue
		}
		kept = append(kept, e)
	}
	if o.TailLines != nil && *o.TailLines >= 0 && int64(len(kept)) > *o.TailLines {
		kept = kept[int64(len(kept))-*o.TailLines:]
	}
	var b bytes.Buffer
	for _, e := range kept {
		if o.Timestamps {
			b.WriteString(e.Time.UTC().Format(time.RFC3339Nano))
			b.WriteByte(' ')
		}
		b.WriteString(e.Text)
		b.WriteByte('\n')
	}
	out := b.Bytes()
	if o.LimitBytes != nil && *o.LimitBytes >= 0 && int64(len(out)) > *o.LimitBytes {
		out = out[:*o.LimitBytes]
	}
	return out
}

// defaultLogLines is what a simulated container "prints" without kindling.test/log.
func defaultLogLines(pod, namespace, container, image string, started time.Time) []string {
	return []string{
		fmt.Sprintf("container %q of pod %s/%s started by the kindling test node's simulated kubelet", container, namespace, pod),
		fmt.Sprintf("image: %s", image),
		fmt.Sprintf("started at: %s", started.UTC().Format(time.RFC3339)),
		"no process runs: the simulated kubelet only reports this container's status",
	}
}
