package main

// The container runtime side the simulation keeps real: the node's containerd, through the
// CRI v1 gRPC API (ImageService for image presence, pulls and the node's image list;
// RuntimeService.Version for nodeInfo.containerRuntimeVersion). Containers themselves are
// not created in containerd.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	pullTimeout = 60 * time.Second
	criTimeout  = 10 * time.Second
	// nodeStatusMaxImages (kubelet config default 50) and names per image
	// (nodestatus/setters.go MaxNamesPerImageInNodeStatus).
	maxImagesInNodeStatus = 50
	maxNamesPerImage      = 5
)

type criClient struct {
	conn   *grpc.ClientConn
	images runtimeapi.ImageServiceClient
	rt     runtimeapi.RuntimeServiceClient
}

// dialCRI connects lazily: calls fail until containerd listens on the socket.
func dialCRI(endpoint string) (*criClient, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "unix://" + endpoint
	}
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16*1024*1024)))
	if err != nil {
		return nil, fmt.Errorf("CRI endpoint %s: %w", endpoint, err)
	}
	return &criClient{conn: conn, images: runtimeapi.NewImageServiceClient(conn), rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

func (c *criClient) Close() error { return c.conn.Close() }

// RuntimeVersion is "<runtimeName>://<runtimeVersion>", e.g. containerd://1.6.20
// (nodestatus/setters.go VersionInfo).
func (c *criClient) RuntimeVersion(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, criTimeout)
	defer cancel()
	v, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s://%s", v.RuntimeName, v.RuntimeVersion), nil
}

// ImageStatus returns nil, nil when the image is absent. containerd normalises the name
// (busybox:latest -> docker.io/library/busybox:latest), so presence is asked, never guessed.
func (c *criClient) ImageStatus(ctx context.Context, image string) (*runtimeapi.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, criTimeout)
	defer cancel()
	resp, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		return nil, err
	}
	return resp.Image, nil
}

// PullImage pulls through containerd (which applies /etc/containerd/certs.d hosts.toml).
func (c *criClient) PullImage(ctx context.Context, image string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	resp, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		return "", err
	}
	return resp.ImageRef, nil
}

func (c *criClient) ListImages(ctx context.Context) ([]*runtimeapi.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, criTimeout)
	defer cancel()
	resp, err := c.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return nil, err
	}
	return resp.Images, nil
}

// applyDefaultImageTag adds ":latest" to an image without tag or digest
// (images/image_manager.go applyDefaultImageTag); an unparsable name is an error
// (InvalidImageName).
func applyDefaultImageTag(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", fmt.Errorf("couldn't parse image name %q: %v", image, err)
	}
	_, isTagged := named.(reference.Tagged)
	_, isDigested := named.(reference.Digested)
	if !isTagged && !isDigested {
		// Keep what the user wrote; only the tag is added.
		return image + ":latest", nil
	}
	return image, nil
}

// effectivePullPolicy: the API server defaults it (Always for :latest or no tag, else
// IfNotPresent); this covers objects that reached us without defaults.
func effectivePullPolicy(c *v1.Container) v1.PullPolicy {
	if c.ImagePullPolicy != "" {
		return c.ImagePullPolicy
	}
	named, err := reference.ParseNormalizedNamed(c.Image)
	if err == nil {
		if _, digested := named.(reference.Digested); digested {
			return v1.PullIfNotPresent
		}
		if t, tagged := named.(reference.Tagged); tagged && t.Tag() != "latest" {
			return v1.PullIfNotPresent
		}
	}
	return v1.PullAlways
}

// imageRefOf is the imageID reported for a container: containerd gives the first repo
// digest when there is one, else the image ID (containerd CRI toCRIContainerStatus).
func imageRefOf(img *runtimeapi.Image) string {
	if img == nil {
		return ""
	}
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.Id
}

// nodeImages builds node.status.images (nodestatus/setters.go Images): biggest first
// (images/image_gc_manager.go sorts by size), at most 50 images, names = repo digests then
// repo tags, at most 5 names each.
func nodeImages(list []*runtimeapi.Image) []v1.ContainerImage {
	sorted := append([]*runtimeapi.Image{}, list...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].GetSize() > sorted[j].GetSize() })
	if len(sorted) > maxImagesInNodeStatus {
		sorted = sorted[:maxImagesInNodeStatus]
	}
	var out []v1.ContainerImage
	for _, img := range sorted {
		names := append(append([]string{}, img.RepoDigests...), img.RepoTags...)
		if len(names) > maxNamesPerImage {
			names = names[:maxNamesPerImage]
		}
		if len(names) == 0 {
			continue
		}
		out = append(out, v1.ContainerImage{Names: names, SizeBytes: int64(img.GetSize())})
	}
	return out
}
