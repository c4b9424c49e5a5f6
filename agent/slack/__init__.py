"""The Slack app: incident threads, approval buttons and chat with the agent (slack-bolt)."""
