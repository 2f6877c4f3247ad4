# ruff: noqa: E501  (the templates hold Markdown tables and shell lines kept whole)
"""The text files of a Lambda bundle: ``handler.py``, ``template.yaml`` and ``README.md``."""

from __future__ import annotations

from typing import Any

from .settings import LAMBDA_DATASOURCE

_HANDLER = '''"""AWS Lambda entry point: handler.handler.

Written by `microlib export lambda` from {notebook}. Its %%microlib model, adapter,
service and module cells are the files in microlib_sources/ (manifest.json gives their
order); they are published when Lambda imports this module, at cold start.

Settings come from the environment, as for any microlib host: MICROLIB_DATASOURCE
(default {datasource}), MICROLIB_AUTH_TOKENS, MICROLIB_SECRET_KEY, MICROLIB_API_ROOT...
"""

from pathlib import Path

from microlib_kernel.serverless import make_handler

handler = make_handler(Path(__file__).resolve().parent / "microlib_sources")
'''


def handler_module(notebook: str) -> str:
    """``handler.py``: the bundle's entry point."""
    return _HANDLER.format(notebook=notebook, datasource=LAMBDA_DATASOURCE)


_TEMPLATE = """AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Description: >-
  microlib models from {notebook} as an AWS Lambda function behind an HTTP API
  (written by microlib export lambda, microlib-kernel {version}).

Parameters:
  Datasource:
    Type: String
    Default: "{datasource}"
    Description: >-
      MICROLIB_DATASOURCE. duckdb:////tmp/... keeps data in each instance's /tmp (not
      shared between instances, lost when an instance goes); memory:// for demos.
      See README.md.
  AuthTokens:
    Type: String
    Default: ""
    NoEcho: true
    Description: >-
      MICROLIB_AUTH_TOKENS, e.g. tok1=read+write,tok2=read. Empty: auth is off, and
      anyone who can reach the URL can read and write.
  SecretKey:
    Type: String
    Default: ""
    NoEcho: true
    Description: MICROLIB_SECRET_KEY (a Fernet key), for models with Secret fields.

Conditions:
  HasAuthTokens: !Not [!Equals [!Ref AuthTokens, ""]]
  HasSecretKey: !Not [!Equals [!Ref SecretKey, ""]]

Resources:
  MicrolibFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: handler.handler
      Runtime: {runtime}
      Architectures: [{architecture}]
      MemorySize: {memory}
      Timeout: {timeout}
      Environment:
        Variables:
          MICROLIB_DATASOURCE: !Ref Datasource
          MICROLIB_AUTH_TOKENS: !If [HasAuthTokens, !Ref AuthTokens, !Ref AWS::NoValue]
          MICROLIB_SECRET_KEY: !If [HasSecretKey, !Ref SecretKey, !Ref AWS::NoValue]
      Events:
        Api:
          Type: HttpApi
          Properties:
            Path: /{{proxy+}}
            Method: ANY

Outputs:
  ApiUrl:
    Description: The root of the models' REST API
    Value: !Sub "https://${{ServerlessHttpApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}{api_root}"
  FunctionName:
    Value: !Ref MicrolibFunction
"""


def sam_template(about: dict[str, Any]) -> str:
    """``template.yaml``: one function, an HTTP API (``$default`` stage) in front."""
    return _TEMPLATE.format(
        notebook=about["notebook"],
        version=about["microlib_kernel"],
        datasource=LAMBDA_DATASOURCE,
        runtime=about["runtime"],
        architecture=about["architecture"],
        memory=about["memory"],
        timeout=about["timeout"],
        api_root=about["api_root"],
    )


_README = """# {notebook} on AWS Lambda

Written by `microlib export lambda` (microlib-kernel {version}). The function serves
the same REST API as `microlib serve` would ({api_root}/models/..., /config,
/openapi.json, /docs, /sql, /health), through [Mangum](https://mangum.fastapiexpert.com/),
for API Gateway HTTP APIs and REST APIs, Application Load Balancers and Function URLs.

{models}

| file | what it is |
|---|---|
| `handler.py` | the entry point, **`handler.handler`** |
| `microlib_sources/` | the notebook's `%%microlib` cells, one file each; `manifest.json` gives their order, kinds, names and versions |
{package_row}| `requirements.txt` | what the function imports, pinned to the versions the export ran with |
| `template.yaml` | an AWS SAM template: the function ({runtime}, {architecture}, {memory} MB, {timeout} s) behind an HTTP API |

At cold start the sources are published in order into a host, exactly as when the
notebook is deployed to a running host; each cell runs in a module of its own.

## Deploy with AWS SAM

```bash
sam build                 # installs requirements.txt for {runtime} into .aws-sam/
sam deploy --guided       # asks for the stack name, region and the parameters below
```

(`sam build --use-container` when this machine is not Linux or has no Python {python_version}:
DuckDB, pydantic-core and cryptography are compiled wheels and must match Lambda's.)

The `ApiUrl` output is the API root: `curl $ApiUrl/config`. Parameters: `Datasource`
(`MICROLIB_DATASOURCE`, default `{datasource}`), `AuthTokens` (`MICROLIB_AUTH_TOKENS`,
e.g. `tok1=read+write`; **empty means anyone who can reach the URL can read and
write**), `SecretKey` (`MICROLIB_SECRET_KEY`, for `Secret` fields).

## Deploy with the AWS CLI (a zip file and a Function URL)

```bash
# 1. dependencies, built for Lambda's Linux ({architecture}), next to handler.py
pip install -r requirements.txt -t . --platform {platform} \\
    --implementation cp --python-version {python_version} --only-binary=:all:
zip -qr ../function.zip . -x '*.pyc' -x '__pycache__/*'

# 2. a role the function runs as (logs only)
aws iam create-role --role-name microlib-lambda --assume-role-policy-document \\
  '{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"lambda.amazonaws.com"}},"Action":"sts:AssumeRole"}}]}}'
aws iam attach-role-policy --role-name microlib-lambda \\
  --policy-arn arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole

# 3. the function (a zip over 50 MB goes through S3: --code S3Bucket=...,S3Key=...)
aws lambda create-function --function-name microlib --runtime {runtime} \\
  --architectures {architecture} --handler handler.handler --memory-size {memory} \\
  --timeout {timeout} --zip-file fileb://../function.zip \\
  --role "arn:aws:iam::$(aws sts get-caller-identity --query Account --output text):role/microlib-lambda" \\
  --environment 'Variables={{MICROLIB_DATASOURCE={datasource}}}'

# 4. a public HTTPS URL (set MICROLIB_AUTH_TOKENS before opening it to the world)
aws lambda create-function-url-config --function-name microlib --auth-type NONE
aws lambda add-permission --function-name microlib --statement-id public-url \\
  --action lambda:InvokeFunctionUrl --principal '*' --function-url-auth-type NONE
```

Then `curl https://<url-id>.lambda-url.<region>.on.aws{api_root}/config`.

## Where the data lives

Lambda runs the function in as many instances as there are concurrent requests, each
with its own memory and its own `/tmp`, created and discarded as traffic comes and
goes. Only `/tmp` is writable. So:

| datasource | on Lambda |
|---|---|
| `memory://` | demos and tests: data lives in one instance's memory, and is gone when it is |
| `{datasource}` (the default) | a DuckDB file in the instance's `/tmp`: fast, SQL works, but **each instance has its own data**, and it is lost when the instance is recycled (after minutes idle, on a new deployment, or any time) |
| `postgresql://...` | real data: one database shared by every instance. Needs the PostgreSQL datasource of microlib's scale-out work; until it is released, use Lambda for stateless or demo APIs |

A DuckDB file on EFS is not a fix: DuckDB allows one writing process at a time, and
concurrent instances would each need it.

## What differs from a long-running host

* `GET {api_root}/events` (a Server-Sent Events stream) answers 501: Lambda buffers
  responses, so a stream would only end when the invocation times out.
* The deploy routes refuse every token unless `MICROLIB_DEPLOY_TOKEN` is set, and even
  then a deploy reaches one instance only: deploy by exporting and updating the function.
* Event handlers and port flows started by a request run before the response is returned
  (within the invocation's time), since Lambda freezes an instance between invocations.
* Behind a REST API stage (`/prod/...`) or an HTTP API stage other than `$default`,
  paths are handled: `Location` headers, the docs page and `openapi.json` carry the prefix.
  A custom domain's base path mapping is stripped when `MICROLIB_LAMBDA_BASE_PATH` names it.
"""


def bundle_readme(about: dict[str, Any]) -> str:
    """``README.md``: what is in the bundle and how to deploy it."""
    models = about["models"]
    if models:
        listed = "\n".join(f"* `{n}` {v} at `{about['api_root']}/models/{e}`" for n, v, e in models)
        models_text = f"Models:\n\n{listed}"
    else:
        models_text = "The sources were not checked at export (`--no-check`)."
    package_row = (
        "| `microlib_kernel/` | microlib-kernel itself, copied from the exporting environment "
        "(it is not on PyPI; its Jupyter dependencies are not needed here) |\n"
        if about["package"]
        else ""
    )
    platform = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
    return _README.format(
        notebook=about["notebook"],
        version=about["microlib_kernel"],
        api_root=about["api_root"],
        models=models_text,
        package_row=package_row,
        runtime=about["runtime"],
        architecture=about["architecture"],
        memory=about["memory"],
        timeout=about["timeout"],
        datasource=LAMBDA_DATASOURCE,
        platform=platform[about["architecture"]],
        python_version=about["python_version"],
    )
