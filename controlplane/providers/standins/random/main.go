// Command pulumi-resource-random is socle's stand-in for the Pulumi random provider (pulumi-random, bridged from
// hashicorp/terraform-provider-random), whose Go module the Go module proxy does not serve. It implements the one
// resource socle uses, random:index/randomPassword:RandomPassword, with the same inputs, outputs, defaults and
// character sets: crypto/rand, the minimum counts drawn first, then the rest, then shuffled; bcryptHash is
// bcrypt (cost 10) of the result. See controlplane/README.md.
package main

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"os"

	"golang.org/x/crypto/bcrypt"

	"socle.local/controlplane/providers/standins/internal/standin"
)

// Version is the release of pulumi-random whose behaviour this stands in for (stamped by the build).
var Version = "4.21.4"

const (
	lowerChars   = "abcdefghijklmnopqrstuvwxyz"
	upperChars   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	numericChars = "0123456789"
	specialChars = "!@#$%&*()-_=+[]{}<>:?"
)

func pick(set string, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for i := 0; i < n; i++ {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
		if err != nil {
			return nil, err
		}
		out = append(out, set[j.Int64()])
	}
	return out, nil
}

func password(in standin.Props) (string, error) {
	special := specialChars
	if s := standin.String(in, "overrideSpecial"); s != "" {
		special = s
	}
	numeric := standin.Bool(in, "numeric") && standin.Bool(in, "number")
	all := ""
	for _, c := range []struct {
		on  bool
		set string
	}{{standin.Bool(in, "upper"), upperChars}, {standin.Bool(in, "lower"), lowerChars},
		{numeric, numericChars}, {standin.Bool(in, "special"), special}} {
		if c.on {
			all += c.set
		}
	}
	var result []byte
	for _, m := range []struct {
		set string
		n   int
	}{{numericChars, standin.Int(in, "minNumeric")}, {lowerChars, standin.Int(in, "minLower")},
		{upperChars, standin.Int(in, "minUpper")}, {special, standin.Int(in, "minSpecial")}} {
		b, err := pick(m.set, m.n)
		if err != nil {
			return "", err
		}
		result = append(result, b...)
	}
	if rest := standin.Int(in, "length") - len(result); rest > 0 {
		if all == "" {
			return "", fmt.Errorf("no character set is enabled")
		}
		b, err := pick(all, rest)
		if err != nil {
			return "", err
		}
		result = append(result, b...)
	}
	for i := len(result) - 1; i > 0; i-- { // Fisher-Yates with crypto/rand
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", err
		}
		result[i], result[j.Int64()] = result[j.Int64()], result[i]
	}
	return string(result), nil
}

func main() {
	p := &standin.Provider{Name: "random", Version: Version, Resources: []*standin.Resource{{
		Token: "random:index/randomPassword:RandomPassword",
		Defaults: standin.Props{"upper": true, "lower": true, "numeric": true, "number": true, "special": true,
			"minUpper": 0.0, "minLower": 0.0, "minNumeric": 0.0, "minSpecial": 0.0},
		Outputs: []string{"result", "bcryptHash"},
		Secrets: []string{"result", "bcryptHash"},
		Check: func(in standin.Props) []string {
			length := standin.Int(in, "length")
			mins := standin.Int(in, "minUpper") + standin.Int(in, "minLower") + standin.Int(in, "minNumeric") +
				standin.Int(in, "minSpecial")
			if length < 1 {
				return []string{"length must be at least 1"}
			}
			if mins > length {
				return []string{fmt.Sprintf("length (%d) must be at least the sum of the minimums (%d)", length, mins)}
			}
			return nil
		},
		Create: func(in standin.Props) (string, standin.Props, error) {
			result, err := password(in)
			if err != nil {
				return "", nil, err
			}
			// bcrypt reads at most 72 bytes (x/crypto refuses longer input): hash those, as bcrypt always did
			hashed := []byte(result)
			if len(hashed) > 72 {
				hashed = hashed[:72]
			}
			hash, err := bcrypt.GenerateFromPassword(hashed, bcrypt.DefaultCost)
			if err != nil {
				return "", nil, err
			}
			return "none", standin.Props{"result": result, "bcryptHash": string(hash)}, nil
		},
	}}}
	if err := p.Main(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
