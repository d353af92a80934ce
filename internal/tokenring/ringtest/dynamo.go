package ringtest

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Item is one DynamoDB item.
type Item = map[string]types.AttributeValue

// Dynamo is an in-memory DynamoDB table with keys pk (S) and sk (S). It
// evaluates the expressions the state package writes: conditions made of
// attribute_exists(p), attribute_not_exists(p), p = :v and p <> :v joined by
// AND/OR (no parentheses); updates with SET p = :v | if_not_exists(p, :v)
// [+ :n], ADD p :n and REMOVE p. Anything else is an error, so a test never
// passes on an expression the fake silently misread. Safe for concurrent use.
type Dynamo struct {
	// Hooks return an error to inject for a call on a key (nil: proceed).
	GetErr    func(pk, sk string) error
	PutErr    func(pk, sk string) error
	UpdateErr func(pk, sk string) error

	mu    sync.Mutex
	items map[string]Item
	calls map[string]int
}

// NewDynamo returns an empty table.
func NewDynamo() *Dynamo { return &Dynamo{items: map[string]Item{}, calls: map[string]int{}} }

func keyOf(it Item) (string, string, error) {
	pk, ok1 := it["pk"].(*types.AttributeValueMemberS)
	sk, ok2 := it["sk"].(*types.AttributeValueMemberS)
	if !ok1 || !ok2 {
		return "", "", errors.New("ringtest: key must have string pk and sk")
	}
	return pk.Value, sk.Value, nil
}

func dkey(pk, sk string) string { return pk + "\x00" + sk }

// Item returns a copy of the item at pk/sk, or nil.
func (d *Dynamo) Item(pk, sk string) Item {
	d.mu.Lock()
	defer d.mu.Unlock()
	return clone(d.items[dkey(pk, sk)])
}

// Items returns copies of every item.
func (d *Dynamo) Items() []Item {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Item
	for _, it := range d.items {
		out = append(out, clone(it))
	}
	return out
}

// Calls returns how many times an operation was called.
func (d *Dynamo) Calls(op string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[op]
}

func clone(it Item) Item {
	if it == nil {
		return nil
	}
	out := make(Item, len(it))
	for k, v := range it {
		out[k] = v
	}
	return out
}

func conditionFailed() error {
	return &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
}

// GetItem implements state.DynamoDB.
func (d *Dynamo) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pk, sk, err := keyOf(in.Key)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["GetItem"]++
	if d.GetErr != nil {
		if err := d.GetErr(pk, sk); err != nil {
			return nil, err
		}
	}
	return &dynamodb.GetItemOutput{Item: clone(d.items[dkey(pk, sk)])}, nil
}

// PutItem implements state.DynamoDB.
func (d *Dynamo) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pk, sk, err := keyOf(in.Item)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["PutItem"]++
	if d.PutErr != nil {
		if err := d.PutErr(pk, sk); err != nil {
			return nil, err
		}
	}
	old := d.items[dkey(pk, sk)]
	if err := checkCondition(aws.ToString(in.ConditionExpression), old, in.ExpressionAttributeNames, in.ExpressionAttributeValues); err != nil {
		return nil, err
	}
	d.items[dkey(pk, sk)] = clone(in.Item)
	out := &dynamodb.PutItemOutput{}
	if in.ReturnValues == types.ReturnValueAllOld {
		out.Attributes = clone(old)
	}
	return out, nil
}

// UpdateItem implements state.DynamoDB.
func (d *Dynamo) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pk, sk, err := keyOf(in.Key)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["UpdateItem"]++
	if d.UpdateErr != nil {
		if err := d.UpdateErr(pk, sk); err != nil {
			return nil, err
		}
	}
	old := d.items[dkey(pk, sk)]
	if err := checkCondition(aws.ToString(in.ConditionExpression), old, in.ExpressionAttributeNames, in.ExpressionAttributeValues); err != nil {
		return nil, err
	}
	next := clone(old)
	if next == nil {
		next = clone(in.Key)
	}
	if err := applyUpdate(aws.ToString(in.UpdateExpression), next, in.ExpressionAttributeNames, in.ExpressionAttributeValues); err != nil {
		return nil, err
	}
	d.items[dkey(pk, sk)] = next
	out := &dynamodb.UpdateItemOutput{}
	switch in.ReturnValues {
	case types.ReturnValueAllOld:
		out.Attributes = clone(old)
	case types.ReturnValueAllNew:
		out.Attributes = clone(next)
	}
	return out, nil
}

// DeleteItem implements state.DynamoDB (conditions supported as for PutItem).
func (d *Dynamo) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	pk, sk, err := keyOf(in.Key)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["DeleteItem"]++
	old := d.items[dkey(pk, sk)]
	if err := checkCondition(aws.ToString(in.ConditionExpression), old, in.ExpressionAttributeNames, in.ExpressionAttributeValues); err != nil {
		return nil, err
	}
	delete(d.items, dkey(pk, sk))
	return &dynamodb.DeleteItemOutput{}, nil
}

// BatchGetItem implements state.DynamoDB (one table, all keys processed).
func (d *Dynamo) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["BatchGetItem"]++
	out := &dynamodb.BatchGetItemOutput{Responses: map[string][]Item{}}
	for table, ka := range in.RequestItems {
		for _, k := range ka.Keys {
			pk, sk, err := keyOf(k)
			if err != nil {
				return nil, err
			}
			if it := d.items[dkey(pk, sk)]; it != nil {
				out.Responses[table] = append(out.Responses[table], clone(it))
			}
		}
	}
	return out, nil
}

// Query implements state.DynamoDB for "pk = :v" only.
func (d *Dynamo) Query(ctx context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["Query"]++
	expr := resolveNames(strings.TrimSpace(aws.ToString(in.KeyConditionExpression)), in.ExpressionAttributeNames)
	parts := strings.Fields(expr)
	if len(parts) != 3 || parts[0] != "pk" || parts[1] != "=" {
		return nil, fmt.Errorf("ringtest: unsupported key condition %q", expr)
	}
	want, ok := in.ExpressionAttributeValues[parts[2]].(*types.AttributeValueMemberS)
	if !ok {
		return nil, fmt.Errorf("ringtest: missing value %s", parts[2])
	}
	out := &dynamodb.QueryOutput{}
	for _, it := range d.items {
		if pk, _, _ := keyOf(it); pk == want.Value {
			out.Items = append(out.Items, clone(it))
		}
	}
	out.Count = int32(len(out.Items))
	return out, nil
}

// Scan implements state.DynamoDB (no filter support: every item).
func (d *Dynamo) Scan(ctx context.Context, in *dynamodb.ScanInput, _ ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["Scan"]++
	if in.FilterExpression != nil {
		return nil, errors.New("ringtest: Scan filters are not supported")
	}
	out := &dynamodb.ScanOutput{}
	for _, it := range d.items {
		out.Items = append(out.Items, clone(it))
	}
	out.Count = int32(len(out.Items))
	return out, nil
}

func resolveNames(s string, names map[string]string) string {
	for k, v := range names {
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

func evalCondition(expr string, item Item, names map[string]string, vals map[string]types.AttributeValue) (bool, error) {
	expr = resolveNames(expr, names)
	if strings.ContainsAny(expr, "()") {
		// only function calls may use parentheses
		stripped := expr
		for _, f := range []string{"attribute_not_exists(", "attribute_exists("} {
			stripped = strings.ReplaceAll(stripped, f, "")
		}
		if strings.Count(stripped, "(") > 0 {
			return false, fmt.Errorf("ringtest: parenthesised condition not supported: %q", expr)
		}
	}
	for _, disj := range strings.Split(expr, " OR ") {
		all := true
		for _, term := range strings.Split(disj, " AND ") {
			ok, err := evalTerm(strings.TrimSpace(term), item, vals)
			if err != nil {
				return false, err
			}
			if !ok {
				all = false
				break
			}
		}
		if all {
			return true, nil
		}
	}
	return false, nil
}

func evalTerm(term string, item Item, vals map[string]types.AttributeValue) (bool, error) {
	if p, ok := fnArg(term, "attribute_not_exists"); ok {
		_, has := item[p]
		return !has, nil
	}
	if p, ok := fnArg(term, "attribute_exists"); ok {
		_, has := item[p]
		return has, nil
	}
	f := strings.Fields(term)
	if len(f) == 3 && (f[1] == "=" || f[1] == "<>") {
		want, ok := vals[f[2]]
		if !ok {
			return false, fmt.Errorf("ringtest: missing value %s", f[2])
		}
		got, has := item[f[0]]
		eq := has && equalAV(got, want)
		if f[1] == "=" {
			return eq, nil
		}
		return has && !eq, nil
	}
	return false, fmt.Errorf("ringtest: unsupported condition term %q", term)
}

func fnArg(term, fn string) (string, bool) {
	if strings.HasPrefix(term, fn+"(") && strings.HasSuffix(term, ")") {
		return strings.TrimSpace(term[len(fn)+1 : len(term)-1]), true
	}
	return "", false
}

func equalAV(a, b types.AttributeValue) bool {
	switch x := a.(type) {
	case *types.AttributeValueMemberS:
		y, ok := b.(*types.AttributeValueMemberS)
		return ok && x.Value == y.Value
	case *types.AttributeValueMemberN:
		y, ok := b.(*types.AttributeValueMemberN)
		if !ok {
			return false
		}
		xf, _ := new(big.Float).SetString(x.Value)
		yf, _ := new(big.Float).SetString(y.Value)
		return xf != nil && yf != nil && xf.Cmp(yf) == 0
	case *types.AttributeValueMemberBOOL:
		y, ok := b.(*types.AttributeValueMemberBOOL)
		return ok && x.Value == y.Value
	}
	return false
}

// applyUpdate applies SET / ADD / REMOVE clauses.
func applyUpdate(expr string, item Item, names map[string]string, vals map[string]types.AttributeValue) error {
	expr = resolveNames(expr, names)
	clauses := map[string]string{}
	rest := " " + expr
	kw := []string{" SET ", " ADD ", " REMOVE "}
	for {
		first, at := "", -1
		for _, k := range kw {
			if i := strings.Index(rest, k); i >= 0 && (at < 0 || i < at) {
				first, at = k, i
			}
		}
		if at < 0 {
			if strings.TrimSpace(rest) != "" {
				return fmt.Errorf("ringtest: unsupported update expression %q", expr)
			}
			break
		}
		if strings.TrimSpace(rest[:at]) != "" {
			return fmt.Errorf("ringtest: unsupported update expression %q", expr)
		}
		body := rest[at+len(first):]
		next := len(body)
		for _, k := range kw {
			if i := strings.Index(body, k); i >= 0 && i < next {
				next = i
			}
		}
		clauses[strings.TrimSpace(first)] = body[:next]
		rest = body[next:]
	}
	for _, a := range splitTop(clauses["SET"]) {
		name, rhs, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("ringtest: bad SET %q", a)
		}
		v, err := evalValue(strings.TrimSpace(rhs), item, vals)
		if err != nil {
			return err
		}
		item[strings.TrimSpace(name)] = v
	}
	for _, a := range splitTop(clauses["ADD"]) {
		f := strings.Fields(a)
		if len(f) != 2 {
			return fmt.Errorf("ringtest: bad ADD %q", a)
		}
		inc, ok := vals[f[1]].(*types.AttributeValueMemberN)
		if !ok {
			return fmt.Errorf("ringtest: ADD needs a number: %q", a)
		}
		cur := &types.AttributeValueMemberN{Value: "0"}
		if c, ok := item[f[0]].(*types.AttributeValueMemberN); ok {
			cur = c
		}
		item[f[0]] = addN(cur, inc)
	}
	for _, a := range splitTop(clauses["REMOVE"]) {
		delete(item, strings.TrimSpace(a))
	}
	return nil
}

func evalValue(s string, item Item, vals map[string]types.AttributeValue) (types.AttributeValue, error) {
	if l, r, ok := strings.Cut(s, " + "); ok {
		a, err := evalValue(strings.TrimSpace(l), item, vals)
		if err != nil {
			return nil, err
		}
		b, err := evalValue(strings.TrimSpace(r), item, vals)
		if err != nil {
			return nil, err
		}
		an, ok1 := a.(*types.AttributeValueMemberN)
		bn, ok2 := b.(*types.AttributeValueMemberN)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("ringtest: + needs numbers: %q", s)
		}
		return addN(an, bn), nil
	}
	if arg, ok := fnArg(s, "if_not_exists"); ok {
		p, def, ok := strings.Cut(arg, ",")
		if !ok {
			return nil, fmt.Errorf("ringtest: bad if_not_exists %q", s)
		}
		if v, has := item[strings.TrimSpace(p)]; has {
			return v, nil
		}
		return evalValue(strings.TrimSpace(def), item, vals)
	}
	if strings.HasPrefix(s, ":") {
		v, ok := vals[s]
		if !ok {
			return nil, fmt.Errorf("ringtest: missing value %s", s)
		}
		return v, nil
	}
	if v, ok := item[s]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("ringtest: unsupported value %q", s)
}

func addN(a, b *types.AttributeValueMemberN) *types.AttributeValueMemberN {
	x, _ := new(big.Float).SetString(a.Value)
	y, _ := new(big.Float).SetString(b.Value)
	return &types.AttributeValueMemberN{Value: new(big.Float).Add(x, y).Text('f', -1)}
}

// splitTop splits on commas outside parentheses.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				if p := strings.TrimSpace(s[start:i]); p != "" {
					out = append(out, p)
				}
				start = i + 1
			}
		}
	}
	if p := strings.TrimSpace(s[start:]); p != "" {
		out = append(out, p)
	}
	return out
}

// checkCondition evaluates a write's ConditionExpression (none: true) against
// the item as it is, failing like DynamoDB when it does not hold.
func checkCondition(expr string, old map[string]types.AttributeValue, names map[string]string, values map[string]types.AttributeValue) error {
	if expr == "" {
		return nil
	}
	ok, err := evalCondition(expr, old, names, values)
	if err != nil {
		return err
	}
	if !ok {
		return conditionFailed()
	}
	return nil
}
