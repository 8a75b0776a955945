"""Dependency aliases for the routes (all `async def`: FastAPI runs a plain `def`
dependency in its thread pool, a hop per request): the open resources, the resolver, the calling
principal (with the scope a route needs), and the widget named in the path (or a 404
problem: another tenant's widget is exactly as absent as one that does not exist)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer, SecurityScopes

from domain.access import RowAccess
from domain.identity import Principal
from domain.models import RESERVED_WIDGET_IDS, WIDGET_ID_RE, WidgetSpec
from service.auth import Authenticator, AuthError, AuthUnavailable
from service.problems import ProblemError
from service.resolution import Resolver
from service.wiring import Resources

REALM = "widget-resolver"


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def get_resolver(request: Request) -> Resolver:
    resolver: Resolver = request.app.state.resolver
    return resolver


ResourcesDep = Annotated[Resources, Depends(get_resources)]
ResolverDep = Annotated[Resolver, Depends(get_resolver)]
WidgetId = Annotated[str, Path(pattern=WIDGET_ID_RE, description="The widget's id.")]

# Declared for the OpenAPI document (security schemes); the headers are read below.
_bearer = HTTPBearer(auto_error=False, description="A JWT (HS256, or RS256/ES256 via JWKS).")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A service API key.")


def unauthorized(exc: AuthError) -> ProblemError:
    return ProblemError(
        401,
        exc.detail,
        title="Unauthorized",
        type_="urn:problem:unauthorized",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="{exc.error}"'},
    )


async def _authenticate(request: Request) -> Principal:
    """The verified caller (cached on the request); 401 / 503 problems."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is None:
        auth: Authenticator = request.app.state.resources.auth
        try:
            cached = await auth.authenticate(
                authorization=request.headers.get("authorization"),
                api_key=request.headers.get("x-api-key"),
                client_host=request.client.host if request.client else None,
            )
        except AuthError as exc:
            raise unauthorized(exc) from None
        except AuthUnavailable as exc:
            raise ProblemError(503, str(exc), headers={"Retry-After": "5"}) from None
        request.state.principal = cached
    return cached


async def current_principal(
    request: Request,
    security_scopes: SecurityScopes,
    _b: Annotated[object, Depends(_bearer)] = None,
    _k: Annotated[object, Depends(_api_key)] = None,
) -> Principal:
    """The verified caller holding every scope the route asks for; 401 / 403 / 503 problems."""
    cached = await _authenticate(request)
    missing = [s for s in security_scopes.scopes if not cached.has(s)]
    if missing:
        need = " ".join(missing)
        raise ProblemError(
            403,
            f"this request needs the scope {need!r}",
            title="Forbidden",
            type_="urn:problem:insufficient-scope",
            headers={
                "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                f'scope="{need}"'
            },
        )
    return cached


async def optional_principal(request: Request) -> Principal | None:
    """The verified caller, or None for a request without credentials that is not the dev
    principal (an open route's anonymous caller). Presented credentials are always verified:
    bad ones are a 401 problem here too. (No security scheme is declared: the route stays
    open in the OpenAPI document.)"""
    presented = "authorization" in request.headers or "x-api-key" in request.headers
    try:
        return await _authenticate(request)
    except ProblemError as exc:
        if exc.status == 401 and not presented:
            return None
        raise


def _scoped(scope: str) -> object:
    return Security(current_principal, scopes=[scope])


DataReader = Annotated[Principal, _scoped("data:read")]
WidgetReader = Annotated[Principal, _scoped("widgets:read")]
WidgetWriter = Annotated[Principal, _scoped("widgets:write")]
MetricsReader = Annotated[Principal, _scoped("metrics:read")]
SqlGenerator = Annotated[Principal, _scoped("sql:generate")]
AuditReader = Annotated[Principal, _scoped("audit:read")]
AnswerVerifier = Annotated[Principal, _scoped("answers:verify")]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]


def access_of(res: Resources, principal: Principal) -> RowAccess:
    return res.auth.access(principal)


async def new_widget_id(
    widget_id: Annotated[
        str,
        Path(
            pattern=WIDGET_ID_RE,
            description="The widget's id (not one of the API's own path segments: "
            + ", ".join(sorted(RESERVED_WIDGET_IDS))
            + ").",
            json_schema_extra={"not": {"enum": sorted(RESERVED_WIDGET_IDS)}},
        ),
    ],
) -> str:
    """The id of a widget being created: a reserved one is a 422 problem."""
    if widget_id in RESERVED_WIDGET_IDS:
        msg = f"widget id {widget_id!r} is reserved for the API's own paths"
        raise ProblemError(
            422,
            msg,
            title="Unprocessable Content",
            type_="urn:problem:validation",
            errors=[{"loc": ["path", "widget_id"], "msg": msg, "type": "reserved"}],
        )
    return widget_id


NewWidgetId = Annotated[str, Depends(new_widget_id)]


@dataclass(frozen=True, slots=True)
class Widget:
    id: str
    spec: WidgetSpec
    principal: Principal


def widget_not_found(widget_id: str) -> ProblemError:
    return ProblemError(404, f"widget {widget_id!r} is not registered", title="Widget not found")


def _widget(widget_id: str, res: Resources, principal: Principal) -> Widget:
    spec = res.registry.widget(widget_id, principal.tenant)
    if spec is None:
        raise widget_not_found(widget_id)
    return Widget(widget_id, spec, principal)


async def get_widget_for_data(widget_id: WidgetId, res: ResourcesDep, who: DataReader) -> Widget:
    """The caller's tenant's widget named in the path (scope data:read), or a 404 problem."""
    return _widget(widget_id, res, who)


async def get_widget_spec(widget_id: WidgetId, res: ResourcesDep, who: WidgetReader) -> Widget:
    """The caller's tenant's widget named in the path (scope widgets:read), or a 404."""
    return _widget(widget_id, res, who)


async def get_widget_to_verify(
    widget_id: WidgetId, res: ResourcesDep, who: AnswerVerifier
) -> Widget:
    """The caller's tenant's widget named in the path (scope answers:verify), or a 404."""
    return _widget(widget_id, res, who)


WidgetDep = Annotated[Widget, Depends(get_widget_for_data)]
WidgetToVerify = Annotated[Widget, Depends(get_widget_to_verify)]
WidgetSpecDep = Annotated[Widget, Depends(get_widget_spec)]
