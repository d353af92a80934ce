"""Expand the AWS::Serverless-2016-10-31 transform locally with aws-sam-translator.

Used by internal/samtemplate (embedded into the Go package and run as `python3 -c`).
stdin: the SAM template as JSON (CodeUri already an s3:// URI, as after `sam package`).
argv[1]: JSON object of parameter values (including pseudo parameters such as AWS::Region).
stdout: the CloudFormation template as JSON. Errors go to stderr with exit status 1.

aws-sam-translator is installed together with cfn-lint (`pip install cfn-lint`).
"""

import json
import logging
import os
import sys


def main() -> int:
    params = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    os.environ.setdefault("AWS_DEFAULT_REGION", params.get("AWS::Region", "us-east-1"))
    logging.getLogger("samtranslator").setLevel(logging.CRITICAL)
    try:
        from samtranslator.parser import parser
        from samtranslator.public.exceptions import InvalidDocumentException
        from samtranslator.translator.translator import Translator
    except ImportError as exc:  # pragma: no cover - depends on the machine
        print(f"aws-sam-translator is not installed ({exc}); pip install cfn-lint", file=sys.stderr)
        return 1

    template = json.load(sys.stdin)
    # No managed policy names are resolved: the template uses full policy ARNs or none.
    translator = Translator(managed_policy_map={}, sam_parser=parser.Parser())
    try:
        out = translator.translate(sam_template=template, parameter_values=params)
    except InvalidDocumentException as exc:
        for cause in exc.causes:
            print(f"sam transform: {cause.message}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
