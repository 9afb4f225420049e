package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/nydus-go/nydusify/internal/retry"
)

// Secret is a credential: it prints and marshals as "REDACTED", so a
// configuration that holds one can be logged or reported without leaking it.
type Secret string

const redacted = "REDACTED"

func (Secret) String() string   { return redacted }
func (Secret) GoString() string { return redacted }

// MarshalJSON implements json.Marshaler with the redacted text.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Default multipart settings of an S3 upload.
const (
	DefaultPartSize        = 64 << 20
	DefaultPartConcurrency = 4
	minPartSize            = 5 << 20 // S3's smallest part but the last
	maxParts               = 10000   // S3's most parts in one upload
)

// S3Config locates a bucket of an S3-compatible store and says how to talk
// to it. Its keys follow nydusd's s3 backend (docs/storage-backends.md).
type S3Config struct {
	// Endpoint is host[:port], or a URL with its scheme; "" means AWS's
	// endpoint for Region.
	Endpoint string
	// Scheme is "https" (the default) or "http", used when Endpoint has none.
	Scheme string
	// Region signs the requests; "" takes AWS_REGION or the shared config,
	// else us-east-1.
	Region string
	Bucket string
	// AccessKeyID and SecretAccessKey are static credentials; both empty
	// means the standard AWS chain (environment, shared files, web
	// identity, instance role).
	AccessKeyID     string
	SecretAccessKey Secret
	// ObjectPrefix is prepended to a blob id to make its object key;
	// MetaPrefix to a bootstrap's name (build --backend-push).
	ObjectPrefix, MetaPrefix string
	// VirtualHosted puts the bucket in the host name
	// (bucket.endpoint/key) instead of the path (endpoint/bucket/key, what
	// nydusd uses and S3-compatible stores expect).
	VirtualHosted bool
	// SkipVerify skips TLS certificate verification.
	SkipVerify bool
	// Timeout bounds each attempt of a read or stat request; 0 means
	// DefaultTimeout. Uploads are bounded by the retry policy's stall
	// timeout instead, since a large part takes as long as it takes.
	Timeout time.Duration
	// Retry is the policy of every request; its zero value is retry.Default.
	Retry retry.Policy
	// PartSize and PartConcurrency shape multipart uploads: a blob larger
	// than PartSize goes up in parts of that size, PartConcurrency at a time.
	// 0 means DefaultPartSize and DefaultPartConcurrency.
	PartSize        int64
	PartConcurrency int
}

// S3 reads and writes blobs as objects of one bucket, through the AWS SDK:
// ranged GETs for reads, single or multipart (parallel parts) PUTs for
// writes, each request retried by the internal/retry policy on 5xx,
// SlowDown, resets and stalls.
type S3 struct {
	cfg      S3Config
	endpoint string // what errors name: the URL, or the AWS region
	client   *s3.Client
}

var (
	_ Backend = (*S3)(nil)
	_ Pusher  = (*S3)(nil)
)

// NewS3 checks cfg and makes a client. It sends no request; Check does.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New(`s3 backend: "bucket_name" is missing`)
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, errors.New(`s3 backend: give both "access_key_id" and "access_key_secret", or neither to use the AWS credential chain`)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("s3 backend: timeout %v is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize {
		return nil, fmt.Errorf("s3 backend: part size %d is below S3's minimum of 5 MiB", cfg.PartSize)
	}
	if cfg.PartConcurrency <= 0 {
		cfg.PartConcurrency = DefaultPartConcurrency
	}
	endpoint := cfg.Endpoint
	if endpoint != "" && !strings.Contains(endpoint, "://") {
		switch cfg.Scheme {
		case "", "https":
			endpoint = "https://" + endpoint
		case "http":
			endpoint = "http://" + endpoint
		default:
			return nil, fmt.Errorf(`s3 backend: scheme %q: want "https" or "http"`, cfg.Scheme)
		}
	}

	// The SDK's buildable client, so that its configuration (AWS_CA_BUNDLE)
	// can adjust the transport; the transport is then wrapped below.
	buildable := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = 2 * cfg.PartConcurrency
		if cfg.SkipVerify {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{}
			}
			tr.TLSClientConfig.InsecureSkipVerify = true
		}
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(buildable),
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, string(cfg.SecretAccessKey), "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 backend: loading the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok {
		return nil, fmt.Errorf("s3 backend: the AWS configuration replaced the HTTP client (%T)", awsCfg.HTTPClient)
	}
	// One attempt at the transport: it watches for stalls, and Do retries
	// whole operations, so a fault is never retried twice over.
	watch := retry.Policy{Attempts: 1, Stall: cfg.Retry.Stall}
	awsCfg.HTTPClient = &http.Client{Transport: watch.Transport(bc.GetTransport())}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = !cfg.VirtualHosted
		// The SDK's default adds a CRC to every upload and checks it on
		// every download; blobs are verified by digest above this layer.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	where := endpoint
	if where == "" {
		where = "AWS S3 (" + awsCfg.Region + ")"
	}
	return &S3{cfg: cfg, endpoint: where, client: client}, nil
}

// String names the backend: the endpoint, bucket and object prefix, never
// a credential.
func (s *S3) String() string {
	return fmt.Sprintf("s3:%s/%s/%s", s.endpoint, s.cfg.Bucket, s.cfg.ObjectPrefix)
}

// BlobKey is the object key of blob blobID.
func (s *S3) BlobKey(blobID string) string { return s.cfg.ObjectPrefix + blobID }

// MetaKey is the object key of the bootstrap named name.
func (s *S3) MetaKey(name string) string { return s.cfg.MetaPrefix + name }

// statusCode is the HTTP status of an SDK error, or 0.
func statusCode(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// do runs one SDK call under the retry policy. SDK errors carrying a
// retryable HTTP status (5xx, SlowDown's 503, 429) are marked temporary;
// network faults are recognised by retry.Retryable itself.
func (s *S3) do(ctx context.Context, op string, timeout time.Duration, fn func(ctx context.Context) error) error {
	return s.cfg.Retry.Do(ctx, op, func(ctx context.Context) error {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		err := fn(ctx)
		if code := statusCode(err); code != 0 && retry.RetryableStatus(code) {
			return retry.Temporary(err)
		}
		return err
	})
}

// explain turns the answers a user can fix into errors that say how,
// naming the endpoint and bucket, never a credential.
func (s *S3) explain(err error, what string) error {
	if err == nil {
		return nil
	}
	where := fmt.Sprintf("bucket %q at %s", s.cfg.Bucket, s.endpoint)
	switch code := statusCode(err); {
	case code == http.StatusForbidden:
		return fmt.Errorf("%s in %s: access denied; check access_key_id and access_key_secret (or the AWS credentials in the environment) and the bucket's policy: %w", what, where, err)
	case code == http.StatusNotFound && isNoSuchBucket(err):
		return fmt.Errorf("%s: %s does not exist; create it or fix bucket_name: %w", what, where, err)
	case code == 0 && retry.Retryable(err):
		return fmt.Errorf("%s in %s: endpoint unreachable; check endpoint and scheme: %w", what, where, err)
	}
	return fmt.Errorf("%s in %s: %w", what, where, err)
}

func isNoSuchBucket(err error) bool {
	var nsb *types.NoSuchBucket
	var api interface{ ErrorCode() string }
	return errors.As(err, &nsb) || (errors.As(err, &api) && api.ErrorCode() == "NoSuchBucket")
}

// Check sends one request (HeadBucket) to learn early whether the bucket
// exists and the credentials reach it.
func (s *S3) Check(ctx context.Context) error {
	err := s.do(ctx, "HeadBucket", s.cfg.Timeout, func(ctx context.Context) error {
		_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.cfg.Bucket})
		return err
	})
	if statusCode(err) == http.StatusNotFound {
		// A HEAD answer has no body to name the error: a 404 on the
		// bucket itself can only mean the bucket is missing.
		return fmt.Errorf("bucket %q at %s does not exist; create it or fix bucket_name: %w", s.cfg.Bucket, s.endpoint, err)
	}
	return s.explain(err, "checking the bucket")
}

// stat returns the size of the object at key, or found false.
func (s *S3) stat(ctx context.Context, key string) (size int64, found bool, err error) {
	err = s.do(ctx, "HeadObject "+key, s.cfg.Timeout, func(ctx context.Context) error {
		out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: &key})
		if err != nil {
			return err
		}
		if out.ContentLength == nil || *out.ContentLength < 0 {
			return errors.New("no Content-Length")
		}
		size = *out.ContentLength
		return nil
	})
	if statusCode(err) == http.StatusNotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.explain(err, "stat "+key)
	}
	return size, true, nil
}

// Size implements Backend with a HEAD request.
func (s *S3) Size(ctx context.Context, blobID string) (int64, error) {
	if err := checkID(blobID); err != nil {
		return 0, err
	}
	key := s.BlobKey(blobID)
	size, found, err := s.stat(ctx, key)
	if err == nil && !found {
		err = fmt.Errorf("blob %s: no object %q in bucket %q at %s", blobID, key, s.cfg.Bucket, s.endpoint)
	}
	return size, err
}

// ReadAt implements Backend with one ranged GET (retried as a whole when the
// body is cut short).
func (s *S3) ReadAt(ctx context.Context, blobID string, p []byte, off int64) (int, error) {
	if err := checkID(blobID); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("reading blob %s: negative offset %d", blobID, off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	key := s.BlobKey(blobID)
	var n int
	err := s.do(ctx, "GetObject "+key, s.cfg.Timeout, func(ctx context.Context) error {
		rng := fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: &key, Range: &rng})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		// What the server announced must arrive; it may be less than p only
		// where the object ends.
		want := int64(len(p))
		if out.ContentLength != nil && *out.ContentLength < want {
			want = *out.ContentLength
		}
		n, err = io.ReadFull(out.Body, p[:want])
		if err != nil {
			return retry.Temporary(fmt.Errorf("body ended after %d of %d bytes: %w", n, want, err))
		}
		return nil
	})
	if statusCode(err) == http.StatusRequestedRangeNotSatisfiable {
		return 0, io.EOF // off is at or past the end
	}
	if err != nil {
		return n, s.explain(err, fmt.Sprintf("reading blob %s at %d+%d", blobID, off, len(p)))
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// PushBlob implements Pusher: the file at path becomes object
// ObjectPrefix+blobID, in one PUT or in parallel parts.
func (s *S3) PushBlob(ctx context.Context, blobID, path string, force bool) (PushResult, error) {
	if err := checkID(blobID); err != nil {
		return PushResult{}, err
	}
	return s.push(ctx, s.BlobKey(blobID), path, force)
}

// PushMeta implements Pusher: the file at path becomes object
// MetaPrefix+name, replacing any object there.
func (s *S3) PushMeta(ctx context.Context, name, path string) (PushResult, error) {
	if err := checkID(name); err != nil {
		return PushResult{}, err
	}
	return s.push(ctx, s.MetaKey(name), path, true)
}

func (s *S3) push(ctx context.Context, key, path string, force bool) (PushResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return PushResult{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return PushResult{}, err
	}
	res := PushResult{Location: "s3://" + s.cfg.Bucket + "/" + key, Size: st.Size()}
	if !force {
		size, found, err := s.stat(ctx, key)
		if err != nil {
			return res, err
		}
		if found && size == st.Size() {
			res.Skipped = true
			return res, nil
		}
	}
	if st.Size() <= s.cfg.PartSize {
		err = s.do(ctx, "PutObject "+key, 0, func(ctx context.Context) error {
			_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
				Bucket: &s.cfg.Bucket, Key: &key, ContentLength: aws.Int64(st.Size()),
				Body: io.NewSectionReader(f, 0, st.Size()),
			})
			return err
		})
	} else {
		err = s.multipart(ctx, key, f, st.Size())
	}
	return res, s.explain(err, "uploading "+key)
}

// multipart uploads f in parts of PartSize (grown when the file needs more
// than S3's 10000 parts), PartConcurrency at a time, each part read from the
// file again on a retry. A failed upload is aborted so no parts linger.
func (s *S3) multipart(ctx context.Context, key string, f *os.File, size int64) error {
	partSize := max(s.cfg.PartSize, (size+maxParts-1)/maxParts)
	var uploadID string
	err := s.do(ctx, "CreateMultipartUpload "+key, s.cfg.Timeout, func(ctx context.Context) error {
		out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &key})
		if err == nil {
			uploadID = aws.ToString(out.UploadId)
		}
		return err
	})
	if err != nil {
		return err
	}
	nparts := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, nparts)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.PartConcurrency)
	for i := range nparts {
		off := int64(i) * partSize
		n := min(partSize, size-off)
		num := int32(i + 1)
		g.Go(func() error {
			return s.do(gctx, fmt.Sprintf("UploadPart %s part %d", key, num), 0, func(ctx context.Context) error {
				out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: &s.cfg.Bucket, Key: &key, UploadId: &uploadID, PartNumber: &num,
					ContentLength: aws.Int64(n), Body: io.NewSectionReader(f, off, n),
				})
				if err != nil {
					return err
				}
				parts[num-1] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)}
				return nil
			})
		})
	}
	err = g.Wait()
	if err == nil {
		err = s.do(ctx, "CompleteMultipartUpload "+key, 0, func(ctx context.Context) error {
			_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
				Bucket: &s.cfg.Bucket, Key: &key, UploadId: &uploadID,
				MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
			})
			return err
		})
	}
	if err != nil {
		// Best effort, also when ctx was cancelled: the parts cost storage.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		defer cancel()
		s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &key, UploadId: &uploadID})
	}
	return err
}
