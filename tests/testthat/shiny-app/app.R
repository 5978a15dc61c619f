# A Shiny app whose ExtendedTask runs in a mirai, driven by a headless
# browser in test-shiny.R. Buttons: "run" invokes the task (a second click
# while it runs is queued by ExtendedTask), "ping" updates another output
# (the session stays responsive meanwhile), "cancel" stops the running
# mirai, after which the queued invocation runs.
#
# The first invocation sleeps long enough that only a cancellation ends it
# in time; later ones finish in a second.
library(shiny)
library(mirai)

daemons(1)
onStop(function() daemons(0))

ui <- fluidPage(
  actionButton("run", "Run task"),
  actionButton("ping", "Ping"),
  actionButton("cancel", "Cancel"),
  tags$dl(
    tags$dt("status"), tags$dd(textOutput("status")),
    tags$dt("started"), tags$dd(textOutput("started")),
    tags$dt("result"), tags$dd(textOutput("result")),
    tags$dt("rejections"), tags$dd(textOutput("rejections")),
    tags$dt("ping"), tags$dd(textOutput("pong"))
  )
)

server <- function(input, output, session) {
  running <- NULL
  started <- reactiveVal(0L)
  rejections <- reactiveVal(character())
  task <- ExtendedTask$new(function(n) {
    started(n)
    running <<- mirai({
      Sys.sleep(secs)
      paste("done", n)
    }, secs = if (n == 1L) 60 else 1, n = n)
    # a side branch records why a task failed; the task gets the mirai
    promises::catch(running, function(e) rejections(c(isolate(rejections()), conditionMessage(e))))
    running
  })
  invocations <- 0L
  observeEvent(input$run, {
    invocations <<- invocations + 1L
    task$invoke(invocations)
  })
  observeEvent(input$cancel, if (!is.null(running)) stop_mirai(running))
  output$status <- renderText(task$status())
  output$started <- renderText(started())
  output$result <- renderText(if (task$status() == "success") task$result() else "")
  output$rejections <- renderText(paste(rejections(), collapse = "; "))
  output$pong <- renderText(paste("pong", input$ping))
}

shinyApp(ui, server)
