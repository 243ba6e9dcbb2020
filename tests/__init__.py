"""Tests of zmq-pipeline."""
