// Swagger UI over the document the gateway generates from the protos' http annotations.
// "Authorize" takes your user id (sent as X-User-ID); the UI's sign-in id is offered.
window.addEventListener("load", () => {
  const user = window.localStorage.getItem("slidelane.user");
  const ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    onComplete: () => {
      if (user) ui.preauthorizeApiKey("userId", user);
    },
  });
});
