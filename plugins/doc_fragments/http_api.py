"""The options of every module that calls Prometheus' or Alertmanager's HTTP API.

One description for the options that plugins/module_utils/http_api.py
(HTTP_API_ARGUMENT_SPEC) gives every such module; a module names it with
``extends_documentation_fragment: [http_api]``.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the service, with the path of its external URL if it has one, e.g.
        C(http://127.0.0.1:9090) (Prometheus) or C(http://127.0.0.1:9093) (Alertmanager).
    type: str
    required: true
  url_username:
    description: Basic-auth user.
    type: str
    aliases: [username]
  url_password:
    description: Basic-auth password.
    type: str
    aliases: [password]
  bearer_token:
    description: Bearer token, instead of basic auth.
    type: str
  ca_path:
    description: CA bundle that signed the service's certificate.
    type: path
  client_cert:
    description: Client certificate for mutual TLS.
    type: path
  client_key:
    description: Key of I(client_cert).
    type: path
  validate_certs:
    description: Verify the service's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each request.
    type: float
    default: 10.0
"""
