package ec2_test

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/config"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
)

func newSDK(endpoint string) (*awsec2.Client, error) {
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithBaseEndpoint(endpoint), config.WithRetryMaxAttempts(2))
	if err != nil {
		return nil, err
	}
	return awsec2.NewFromConfig(cfg), nil
}
