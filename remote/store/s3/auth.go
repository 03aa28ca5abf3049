package s3

import (
	"fmt"
	"os"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Auth says where the credentials come from; the names are bazel-remote's
// (--s3.auth_method and the flags that go with it).
type Auth struct {
	// Method is access_key (the default: AccessKeyID and SecretAccessKey,
	// or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN
	// from the environment when they are empty), aws_credentials_file
	// (CredentialsFile, default ~/.aws/credentials, and Profile) or
	// iam_role (the instance's role, from IAMEndpoint or the default).
	Method          string
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	CredentialsFile string
	Profile         string
	IAMEndpoint     string
}

// Credentials returns the credentials a describes, checked as far as can
// be done without asking S3 (keys present, file readable, profile there).
func Credentials(a Auth) (*credentials.Credentials, error) {
	switch a.Method {
	case "", "access_key":
		id, secret, token := a.AccessKeyID, a.SecretAccessKey, a.SessionToken
		if id == "" && secret == "" {
			id, secret, token = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")
		}
		if id == "" || secret == "" {
			return nil, fmt.Errorf("--s3.auth_method access_key: no key: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (or --s3.access_key_id and --s3.secret_access_key)")
		}
		return credentials.NewStaticV4(id, secret, token), nil
	case "aws_credentials_file":
		c := credentials.NewFileAWSCredentials(a.CredentialsFile, a.Profile)
		if _, err := c.Get(); err != nil {
			return nil, fmt.Errorf("--s3.auth_method aws_credentials_file: --s3.aws_shared_credentials_file %q, --s3.aws_profile %q: %v", a.CredentialsFile, a.Profile, err)
		}
		if v, _ := c.Get(); v.AccessKeyID == "" {
			return nil, fmt.Errorf("--s3.auth_method aws_credentials_file: no aws_access_key_id for profile %q in --s3.aws_shared_credentials_file %q", a.Profile, a.CredentialsFile)
		}
		return c, nil
	case "iam_role":
		return credentials.NewIAM(a.IAMEndpoint), nil
	}
	return nil, fmt.Errorf("unknown --s3.auth_method %q (access_key, aws_credentials_file or iam_role)", a.Method)
}
