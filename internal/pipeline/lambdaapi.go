package pipeline

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// The few Lambda API calls the harness makes against moto.

// FunctionConfig is the part of a deployed function's configuration the
// harness uses.
type FunctionConfig struct {
	FunctionName string
	Timeout      int // seconds
	MemorySize   int // MB
}

func functionConfig(ctx context.Context, c *lambda.Client, name string) (FunctionConfig, error) {
	out, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
	if err != nil {
		return FunctionConfig{}, fmt.Errorf("get function configuration %s: %w", name, err)
	}
	return FunctionConfig{
		FunctionName: aws.ToString(out.FunctionName),
		Timeout:      int(aws.ToInt32(out.Timeout)),
		MemorySize:   int(aws.ToInt32(out.MemorySize)),
	}, nil
}

// queueMappings are function's event source mappings from the queue queueARN.
func queueMappings(ctx context.Context, c *lambda.Client, function, queueARN string) ([]types.EventSourceMappingConfiguration, error) {
	var out []types.EventSourceMappingConfiguration
	pages := lambda.NewListEventSourceMappingsPaginator(c, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String(function)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list event source mappings of %s: %w", function, err)
		}
		for _, m := range page.EventSourceMappings {
			if aws.ToString(m.EventSourceArn) == queueARN {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

func disableMapping(ctx context.Context, c *lambda.Client, uuid string) error {
	_, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(uuid), Enabled: aws.Bool(false)})
	if err != nil {
		return fmt.Errorf("disable event source mapping %s: %w", uuid, err)
	}
	return nil
}
