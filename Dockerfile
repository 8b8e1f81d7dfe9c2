# smtpgw container image: the static binary on distroless, as a non-root user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t smtpgw .
#   docker run -e SMTPGW_CLIENT_SECRET=… -v smtpgw-spool:/var/spool/smtpgw \
#     -v ./smtpgw.toml:/etc/smtpgw/smtpgw.toml:ro -p 25:25 -p 587:587 smtpgw

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/smtpgw ./cmd/smtpgw \
 && mkdir -p /out/spool

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/smtpgw /usr/bin/smtpgw
# The Kubernetes ConfigMap's configuration: Graph with the secret from
# SMTPGW_CLIENT_SECRET, listeners on 25 and 587, the spool below.
COPY deploy/kubernetes/base/smtpgw.toml /etc/smtpgw/smtpgw.toml
COPY --from=build --chown=nonroot:nonroot /out/spool /var/spool/smtpgw
USER nonroot:nonroot
VOLUME /var/spool/smtpgw
EXPOSE 25 587
ENTRYPOINT ["/usr/bin/smtpgw"]
CMD ["serve", "-config", "/etc/smtpgw/smtpgw.toml"]
