package capabilities

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func statusInvalid(err error) error {
	return status.Error(codes.InvalidArgument, err.Error())
}
