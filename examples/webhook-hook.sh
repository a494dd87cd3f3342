#!/bin/sh
# A wansync hook: post one small JSON message per finished task to the webhook URL in $1.
#   hooks:
#     on_success: /etc/wansync/webhook-hook.sh https://hooks.example.com/wansync
#     on_failure: /etc/wansync/webhook-hook.sh https://hooks.example.com/wansync
# Needs curl and jq. A non-zero exit (curl --fail: any HTTP error) makes wansync retry.
# It posts names and paths, not the sidecar: the sidecar holds the signed video URL.
set -eu
url=$1
jq -n \
  --arg event "$WANSYNC_EVENT" \
  --arg name "$WANSYNC_NAME" \
  --arg task_id "$WANSYNC_TASK_ID" \
  --arg video "${WANSYNC_VIDEO:-}" \
  --arg code "${WANSYNC_ERROR_CODE:-}" \
  --arg message "${WANSYNC_ERROR_MESSAGE:-}" \
  '{text: (if $event == "succeeded" then "wansync: \($name) is ready: \($video)"
           else "wansync: \($name) failed: \($code) \($message)" end),
    event: $event, name: $name, task_id: $task_id, video: $video,
    error_code: $code, error_message: $message}' |
curl --silent --show-error --fail --max-time 20 \
  -H 'Content-Type: application/json' --data-binary @- "$url"
