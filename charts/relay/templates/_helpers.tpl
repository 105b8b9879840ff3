{{/*
Names, labels and the pieces shared by the StatefulSet (sqlite) and the Deployment
(postgres). Mount points are fixed here and nowhere else; the relay config refers to them.
*/}}

{{- define "relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "relay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "relay.labels" -}}
helm.sh/chart: {{ include "relay.chart" . }}
{{ include "relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: judicial-relay
{{- end -}}

{{- define "relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "relay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "relay.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "relay.tlsSecret" -}}
{{- default (printf "%s-tls" (include "relay.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "relay.signingSecret" -}}
{{- default (printf "%s-signing-key" (include "relay.fullname" .)) .Values.relay.signing.existingSecret -}}
{{- end -}}

{{- define "relay.keyId" -}}
{{- default (include "relay.fullname" .) .Values.relay.signing.keyId -}}
{{- end -}}

{{- define "relay.opsServiceName" -}}
{{- printf "%s-ops" (include "relay.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Refuse combinations the relay cannot run with, with a message that says what to change.
Included by the ConfigMap, which every render produces.
*/}}
{{- define "relay.validate" -}}
{{- $backend := .Values.storage.backend -}}
{{- if and (eq $backend "sqlite") (gt (int .Values.replicaCount) 1) -}}
{{- fail (printf "storage.backend=sqlite keeps the relay's database on one volume and runs exactly one replica, but replicaCount is %d: set replicaCount: 1, or use storage.backend=postgres to run several replicas" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and (eq $backend "sqlite") .Values.autoscaling.enabled -}}
{{- fail "autoscaling.enabled needs storage.backend=postgres: the SQLite store runs exactly one replica" -}}
{{- end -}}
{{- if and (eq $backend "postgres") (not .Values.storage.postgres.existingSecret) -}}
{{- fail "storage.backend=postgres needs storage.postgres.existingSecret: a Secret whose key storage.postgres.secretKey holds the PostgreSQL connection string" -}}
{{- end -}}
{{- if and (not .Values.tls.enabled) (not .Values.tls.insecureDev) -}}
{{- fail "tls.enabled=false serves the court-facing API in plaintext; set tls.insecureDev=true as well if this is really a development install" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.clientCA.existingSecret) -}}
{{- fail "tls.clientCA.existingSecret is required: the gRPC API accepts only clients with a certificate from this CA bundle (mutual TLS)" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.requireClientCert) (not .Values.tls.insecureDev) -}}
{{- fail "tls.requireClientCert=false turns mutual TLS off; set tls.insecureDev=true as well if this is really a development install" -}}
{{- end -}}
{{- if and (not .Values.relay.access) (not .Values.tls.insecureDev) -}}
{{- fail "relay.access is required: court grants, operators and institution keys (README, Access); only a tls.insecureDev install runs without it" -}}
{{- end -}}
{{- if and .Values.relay.signing.sm2SignerId (ne .Values.relay.signing.algorithm "sm2") -}}
{{- fail "relay.signing.sm2SignerId applies only to relay.signing.algorithm=sm2" -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas is larger than autoscaling.maxReplicas" -}}
{{- end -}}
{{- $sink := (.Values.relay.audit | default dict).sink -}}
{{- if and $sink (not .Values.tls.auditSink.existingSecret) -}}
{{- fail "relay.audit.sink needs tls.auditSink.existingSecret: a Secret with ca.crt (the judicial chain's CA), tls.crt and tls.key (the relay's client certificate for it)" -}}
{{- end -}}
{{- if and .Values.tls.auditSink.existingSecret (not $sink) -}}
{{- fail "tls.auditSink.existingSecret is set but relay.audit.sink is not: set relay.audit.sink.endpoint to the judicial chain's relay.sink.v1 address" -}}
{{- end -}}
{{- end -}}

{{/*
relay.yaml, the relay's configuration file (relay/config.py). Paths point at the mounts of
relay.podSpec.
*/}}
{{- define "relay.config" -}}
version: 1
listen:
  grpc: {{ printf "0.0.0.0:%d" (int .Values.ports.grpc) | quote }}
  health: {{ printf "0.0.0.0:%d" (int .Values.ports.health) | quote }}
  ops: {{ printf "0.0.0.0:%d" (int .Values.ports.ops) | quote }}
  {{- if .Values.web.enabled }}
  web: {{ printf "0.0.0.0:%d" (int .Values.ports.web) | quote }}
  {{- end }}
{{- if .Values.tls.enabled }}
tls:
  cert: /etc/relay/tls/tls.crt
  key: /etc/relay/tls/tls.key
  {{- if .Values.tls.clientCA.existingSecret }}
  client_ca: /etc/relay/client-ca/ca.crt
  {{- end }}
  require_client_cert: {{ .Values.tls.requireClientCert }}
{{- end }}
store:
  backend: {{ .Values.storage.backend }}
  {{- if eq .Values.storage.backend "sqlite" }}
  path: /var/lib/relay/relay.db
  full_check: {{ .Values.storage.sqlite.fullCheck }}
  readers: {{ int .Values.storage.sqlite.readers }}
  {{- end }}
signing:
  algorithm: {{ .Values.relay.signing.algorithm }}
  key_id: {{ include "relay.keyId" . | quote }}
  key_file: /etc/relay/signing/signing.key
  {{- if .Values.relay.signing.sm2SignerId }}
  sm2_signer_id: {{ .Values.relay.signing.sm2SignerId | quote }}
  {{- end }}
{{- if .Values.relay.chains }}
chains:
  {{- range $name, $_ := .Values.relay.chains }}
  - /etc/relay/chains/{{ $name }}.json
  {{- end }}
{{- end }}
{{- with .Values.relay.sync }}
sync:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if or .Values.relay.adapters .Values.tls.adapterClient.existingSecret }}
adapters:
  {{- with .Values.relay.adapters }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if .Values.tls.adapterClient.existingSecret }}
  client_cert: /etc/relay/adapter-client/tls.crt
  client_key: /etc/relay/adapter-client/tls.key
  {{- end }}
{{- end }}
{{- with .Values.relay.limits }}
limits:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.relay.access }}
access:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.relay.audit }}
audit:
  {{- $rest := omit . "sink" }}
  {{- if $rest }}
  {{- toYaml $rest | nindent 2 }}
  {{- end }}
  {{- with .sink }}
  sink:
    {{- toYaml . | nindent 4 }}
    tls_ca: /etc/relay/audit-sink/ca.crt
    tls_cert: /etc/relay/audit-sink/tls.crt
    tls_key: /etc/relay/audit-sink/tls.key
  {{- end }}
{{- end }}
shutdown_grace: {{ .Values.relay.shutdownGrace | quote }}
log_level: {{ .Values.relay.logLevel }}
{{- end -}}

{{/*
The pod spec shared by the StatefulSet and the Deployment.
*/}}
{{- define "relay.podTemplate" -}}
metadata:
  labels:
    {{- include "relay.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: relay
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "relay.config" . | sha256sum }}
    checksum/chains: {{ toJson .Values.relay.chains | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "relay.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ int .Values.terminationGracePeriodSeconds }}
  enableServiceLinks: false
  containers:
    - name: relay
      image: {{ include "relay.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config
        - /etc/relay/relay.yaml
        {{- if not .Values.tls.enabled }}
        - --insecure-dev
        {{- end }}
      ports:
        - name: grpc
          containerPort: {{ int .Values.ports.grpc }}
          protocol: TCP
        - name: health
          containerPort: {{ int .Values.ports.health }}
          protocol: TCP
        - name: ops
          containerPort: {{ int .Values.ports.ops }}
          protocol: TCP
        {{- if .Values.web.enabled }}
        - name: web
          containerPort: {{ int .Values.ports.web }}
          protocol: TCP
        {{- end }}
      env:
        - name: TMPDIR
          value: /tmp
        {{- if eq .Values.storage.backend "postgres" }}
        - name: RELAY_STORE_DSN
          valueFrom:
            secretKeyRef:
              name: {{ .Values.storage.postgres.existingSecret }}
              key: {{ .Values.storage.postgres.secretKey }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $p := .Values.probes }}
      startupProbe:
        grpc:
          port: {{ int .Values.ports.health }}
        periodSeconds: {{ int $p.startup.periodSeconds }}
        timeoutSeconds: {{ int $p.startup.timeoutSeconds }}
        failureThreshold: {{ int $p.startup.failureThreshold }}
      readinessProbe:
        grpc:
          port: {{ int .Values.ports.health }}
        periodSeconds: {{ int $p.readiness.periodSeconds }}
        timeoutSeconds: {{ int $p.readiness.timeoutSeconds }}
        failureThreshold: {{ int $p.readiness.failureThreshold }}
      livenessProbe:
        grpc:
          port: {{ int .Values.ports.health }}
        periodSeconds: {{ int $p.liveness.periodSeconds }}
        timeoutSeconds: {{ int $p.liveness.timeoutSeconds }}
        failureThreshold: {{ int $p.liveness.failureThreshold }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/relay/relay.yaml
          subPath: relay.yaml
          readOnly: true
        {{- if .Values.relay.chains }}
        - name: chains
          mountPath: /etc/relay/chains
          readOnly: true
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/relay/tls
          readOnly: true
        {{- end }}
        {{- if .Values.tls.clientCA.existingSecret }}
        - name: client-ca
          mountPath: /etc/relay/client-ca
          readOnly: true
        {{- end }}
        {{- if .Values.tls.adapterClient.existingSecret }}
        - name: adapter-client
          mountPath: /etc/relay/adapter-client
          readOnly: true
        {{- end }}
        {{- if .Values.tls.auditSink.existingSecret }}
        - name: audit-sink
          mountPath: /etc/relay/audit-sink
          readOnly: true
        {{- end }}
        - name: signing
          mountPath: /etc/relay/signing
          readOnly: true
        {{- if eq .Values.storage.backend "sqlite" }}
        - name: data
          mountPath: /var/lib/relay
        {{- end }}
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "relay.fullname" . }}
        items:
          - key: relay.yaml
            path: relay.yaml
    {{- if .Values.relay.chains }}
    - name: chains
      configMap:
        name: {{ include "relay.fullname" . }}
        items:
          {{- range $name, $_ := .Values.relay.chains }}
          - key: chain-{{ $name }}.json
            path: {{ $name }}.json
          {{- end }}
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "relay.tlsSecret" . }}
        defaultMode: 0440
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
    {{- end }}
    {{- if .Values.tls.clientCA.existingSecret }}
    - name: client-ca
      secret:
        secretName: {{ .Values.tls.clientCA.existingSecret }}
        defaultMode: 0440
        items:
          - key: {{ .Values.tls.clientCA.secretKey }}
            path: ca.crt
    {{- end }}
    {{- if .Values.tls.adapterClient.existingSecret }}
    - name: adapter-client
      secret:
        secretName: {{ .Values.tls.adapterClient.existingSecret }}
        defaultMode: 0440
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
    {{- end }}
    {{- if .Values.tls.auditSink.existingSecret }}
    - name: audit-sink
      secret:
        secretName: {{ .Values.tls.auditSink.existingSecret }}
        defaultMode: 0440
        items:
          - key: ca.crt
            path: ca.crt
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
    {{- end }}
    - name: signing
      secret:
        secretName: {{ include "relay.signingSecret" . }}
        defaultMode: 0440
        items:
          - key: {{ .Values.relay.signing.secretKey }}
            path: signing.key
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
PromQL label matchers selecting this release's series.
*/}}
{{- define "relay.alertSelector" -}}
{{- if .Values.metrics.prometheusRule.selector -}}
{{- .Values.metrics.prometheusRule.selector -}}
{{- else -}}
{{- printf "job=%q,namespace=%q" (include "relay.opsServiceName" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}
