// Starts Swagger UI (served from the installed package under /docs/assets) over this
// service's own OpenAPI document. A file, not an inline script: the page's CSP allows
// scripts from this origin only.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null, // no badge fetched from another host
});
