package pipeline

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// The few Lambda API calls the harness makes against moto.

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
