package main

import (
	"github.com/spf13/cobra"
)

func newInspectCmd() *cobra.Command {
	return &cobra.Command{Use: "inspect", Hidden: true}
}
